// The test images' programs: the pause program of the real nodes' pod
// sandboxes, the test application, and mkimage, which writes an OCI image
// archive that `ctr images import` loads (no registry, no container engine).
// Standard library only, so there is no go.sum and nothing to download.
module cafe-operator.local/images

go 1.26.0
