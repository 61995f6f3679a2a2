package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestBinaryLinksNoTesting: the shipped binary (this package and what it imports, tests aside)
// links no package testing; the simulators the demo runs take tb.TB instead.
func TestBinaryLinksNoTesting(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/transition-matrix/transition-matrix/internal/synapsesim") {
		t.Fatalf("go list -deps does not list the demo's simulator: %v", deps)
	}
	if slices.Contains(deps, "testing") {
		var via []string
		for _, p := range deps {
			if !strings.HasPrefix(p, "github.com/transition-matrix/") {
				continue
			}
			imps, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, p).Output()
			if err == nil && slices.Contains(strings.Fields(string(imps)), "testing") {
				via = append(via, p)
			}
		}
		t.Errorf("the shim binary links package testing, imported by %s: move test helpers to _test.go files or take tb.TB", strings.Join(via, ", "))
	}
}
