//go:build tools

// Package tools keeps the registry command in this module's build list.
package tools

import _ "github.com/distribution/distribution/v3/cmd/registry"
