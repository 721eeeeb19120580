// SPDX-License-Identifier: MIT

//go:build !unix

package config

import "io/fs"

// ownerProblem is "" where file ownership is not checked.
func ownerProblem(string, fs.FileInfo) string { return "" }

// dirProblem is "" where directory permissions are not checked.
func dirProblem(string) string { return "" }
