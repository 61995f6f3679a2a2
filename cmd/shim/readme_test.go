package main

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmePackageMap returns the package directories the README's Layout map lists, in order.
func readmePackageMap(t *testing.T, readme string) []string {
	t.Helper()
	_, after, ok := strings.Cut(readme, "\n## Layout\n")
	if !ok {
		t.Fatal("README.md has no ## Layout section")
	}
	_, block, ok := strings.Cut(after, "\n```\n")
	if !ok {
		t.Fatal("README.md's Layout section has no package map block")
	}
	block, _, _ = strings.Cut(block, "\n```")
	line := regexp.MustCompile(`^(\S+)/\s+\S`)
	var out []string
	for l := range strings.SplitSeq(block, "\n") {
		if m := line.FindStringSubmatch(l); m != nil {
			out = append(out, m[1])
		} else if l != "" && !strings.HasPrefix(l, " ") {
			t.Errorf("README package map: line %q is not `dir/  what it is for`", l)
		}
	}
	return out
}

// TestReadmePackageMapIsGoList: the README lists every package `go list ./...` finds, each once,
// and no package that does not exist.
func TestReadmePackageMapIsGoList(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	listed := readmePackageMap(t, string(data))
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	list := exec.Command("go", "list", "-f", "{{.Dir}}", "./...")
	list.Dir = strings.TrimSpace(string(root))
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v", err)
	}
	prefix := list.Dir + string(os.PathSeparator)
	var pkgs []string
	for _, dir := range strings.Fields(string(out)) {
		pkgs = append(pkgs, strings.TrimPrefix(dir, prefix))
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list ./... found only %v", pkgs)
	}
	seen := map[string]bool{}
	for _, p := range listed {
		if seen[p] {
			t.Errorf("README package map lists %s/ twice", p)
		}
		seen[p] = true
		if !slices.Contains(pkgs, p) {
			t.Errorf("README package map lists %s/, which is no package (go list ./...)", p)
		}
	}
	for _, p := range pkgs {
		if !seen[p] {
			t.Errorf("package %s has no line in README.md's package map (## Layout): add `%s/  what it is for`", p, p)
		}
	}
}
