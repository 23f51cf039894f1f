//go:build tools

// Package tools keeps the Prometheus command in this module's build list.
package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
