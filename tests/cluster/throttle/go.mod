// The bandwidth throttle in front of the real nodes' registry (registry.sh).
// Standard library only, so there is no go.sum and nothing to download.
module cafe-operator.local/cluster/throttle

go 1.26.0
