package conduitpatch

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var (
	hexCommit   = regexp.MustCompile(`\b[0-9a-f]{40}\b`)
	hunkHeader  = regexp.MustCompile(`^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@`)
	indexLine   = regexp.MustCompile(`^index ([0-9a-f]+)\.\.([0-9a-f]+)(?: [0-7]{6})?$`)
	zeroBlob    = strings.Repeat("0", 40)
	allowedMeta = []string{"new file mode 100644", "index "}
)

// patchFile is what the checker learned about one file of the patch.
type patchFile struct {
	path  string
	isNew bool
	hunks int
	added int
}

// checkPatch parses a git patch and reports every way it is not a zero-context, added-lines-only
// patch of relative paths with a header naming exactly one 40-hex commit. It returns that commit.
func checkPatch(text string) (commit string, files []patchFile, problems []string) {
	problem := func(line int, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("line %d: ", line)+fmt.Sprintf(format, args...))
	}

	header, _, found := strings.Cut(text, "\ndiff --git ")
	if !found {
		return "", nil, []string{`no "diff --git" line: not a git patch`}
	}
	if commits := uniq(hexCommit.FindAllString(header, -1)); len(commits) != 1 {
		problems = append(problems, fmt.Sprintf("the header must name exactly one 40-hex Conduit commit, it names %d: %v", len(commits), commits))
	} else {
		commit = commits[0]
	}

	var (
		cur       *patchFile
		remaining int // added lines the current hunk still announces
		lastStart int // new-side start of the previous hunk of the current file
		inHeader  = true
		lineNo    = 0
	)
	endHunk := func() {
		if remaining > 0 {
			problem(lineNo, "%s: the hunk announces %d more added lines than it has", cur.path, remaining)
		}
		remaining = 0
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lineNo++
		l := sc.Text()
		if strings.HasPrefix(l, "diff --git ") {
			inHeader = false
			if cur != nil {
				endHunk()
				if cur.hunks == 0 {
					problem(lineNo, "%s: no hunk", cur.path)
				}
			}
			a, b, ok := strings.Cut(strings.TrimPrefix(l, "diff --git "), " ")
			if !ok || !strings.HasPrefix(a, "a/") || !strings.HasPrefix(b, "b/") || a[2:] != b[2:] {
				problem(lineNo, "%q: expected \"diff --git a/P b/P\" with the same P", l)
			}
			p := strings.TrimPrefix(b, "b/")
			if err := checkPath(p); err != nil {
				problem(lineNo, "%v", err)
			}
			files = append(files, patchFile{path: p})
			cur = &files[len(files)-1]
			lastStart = 0
			continue
		}
		if inHeader {
			continue
		}
		if remaining > 0 {
			if !strings.HasPrefix(l, "+") {
				problem(lineNo, "%s: %q is not an added line; only lines starting with + may follow a hunk header", cur.path, truncate(l))
				remaining = 0
				continue
			}
			cur.added++
			remaining--
			continue
		}
		switch {
		case strings.HasPrefix(l, "@@"):
			m := hunkHeader.FindStringSubmatch(l)
			if m == nil {
				problem(lineNo, "%s: malformed hunk header %q", cur.path, l)
				continue
			}
			cur.hunks++
			oldCount, newStart, newCount := count(m[2]), atoi(m[3]), count(m[4])
			if oldCount != 0 {
				problem(lineNo, "%s: hunk %q touches %d existing lines; every hunk must be zero-context with only added lines (-N,0)", cur.path, l, oldCount)
			}
			if newCount == 0 {
				problem(lineNo, "%s: hunk %q adds nothing", cur.path, l)
			}
			if newStart <= lastStart {
				problem(lineNo, "%s: hunk %q is out of order", cur.path, l)
			}
			lastStart = newStart
			remaining = newCount
		case l == "--- /dev/null":
			cur.isNew = true
		case strings.HasPrefix(l, "--- "):
			if want := "--- a/" + cur.path; l != want {
				problem(lineNo, "%s: %q, want %q", cur.path, l, want)
			}
		case strings.HasPrefix(l, "+++ "):
			if want := "+++ b/" + cur.path; l != want {
				problem(lineNo, "%s: %q, want %q (the patch must not delete or rename files)", cur.path, l, want)
			}
		case strings.HasPrefix(l, "index "):
			m := indexLine.FindStringSubmatch(l)
			if m == nil || len(m[1]) != 40 || len(m[2]) != 40 {
				problem(lineNo, "%s: %q: want full 40-hex blob ids (git diff --full-index), so scripts/check-conduit-patch can check the base", cur.path, l)
			} else if (m[1] == zeroBlob) != strings.Contains(text, "diff --git a/"+cur.path+" b/"+cur.path+"\nnew file mode") {
				problem(lineNo, "%s: the index line and the \"new file mode\" line disagree", cur.path)
			}
		case hasAnyPrefix(l, allowedMeta):
		default:
			problem(lineNo, "%s: unexpected line %q (only added lines; no deletions, renames, mode changes, binaries or context)", cur.path, truncate(l))
		}
	}
	if err := sc.Err(); err != nil {
		problems = append(problems, err.Error())
	}
	if cur != nil {
		endHunk()
		if cur.hunks == 0 {
			problem(lineNo, "%s: no hunk", cur.path)
		}
	}
	return commit, files, problems
}

// checkPath accepts only clean relative paths inside the tree.
func checkPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q is absolute", p)
	case strings.ContainsAny(p, "\\\"\t"):
		return fmt.Errorf("%q contains a backslash, quote or tab", p)
	case path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") || p == ".":
		return fmt.Errorf("%q is not a clean path inside the tree", p)
	case p == ".git" || strings.HasPrefix(p, ".git/"):
		return fmt.Errorf("%q is inside .git", p)
	}
	return nil
}

func count(s string) int {
	if s == "" {
		return 1 // "@@ -N +M @@" means one line
	}
	return atoi(s)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

func uniq(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// shippedPatches are the patch files of this directory, one per Conduit commit.
var shippedPatches = []string{"self-federation.patch", "self-federation-v0.10.12.patch"}

// TestPatchIsAddedLinesOnly checks every shipped patch and that the README names its commit.
func TestPatchIsAddedLinesOnly(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "git apply --unidiff-zero") {
		t.Error("README.md does not say to apply with git apply --unidiff-zero")
	}
	commits := map[string]string{}
	for _, name := range shippedPatches {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			commit, files, problems := checkPatch(string(b))
			for _, p := range problems {
				t.Error(p)
			}
			if len(files) == 0 {
				t.Fatal("the patch touches no file")
			}
			added := 0
			for _, f := range files {
				added += f.added
				if f.path == "Cargo.lock" {
					t.Error("the patch touches Cargo.lock; cargo updates it itself, and the lock's lines are Conduit's")
				}
			}
			t.Logf("commit %s, %d files, %d added lines", commit, len(files), added)
			if other, dup := commits[commit]; dup && commit != "" {
				t.Errorf("%s names the same Conduit commit %s as %s: one patch per commit", name, commit, other)
			}
			commits[commit] = name
			if commit != "" && !strings.Contains(string(readme), commit) {
				t.Errorf("README.md does not mention the Conduit commit %s that %s names", commit, name)
			}
			if !strings.Contains(string(readme), name) {
				t.Errorf("README.md does not name %s", name)
			}

			// The new module must be a new file, so that applying twice fails instead of doubling lines.
			newFiles := 0
			for _, f := range files {
				if f.isNew {
					newFiles++
				}
			}
			if newFiles == 0 {
				t.Error("the patch adds no new file; zero-context hunks would then apply twice without complaint")
			}
		})
	}
}

// TestCheckPatchRejects feeds the checker patches that break each rule.
func TestCheckPatchRejects(t *testing.T) {
	const commit = "d058dab7aa5e9e41ef7cbab14f6ef030486f3ca8"
	const blobA = "1111111111111111111111111111111111111111"
	const blobB = "2222222222222222222222222222222222222222"
	good := "Applies to Conduit commit " + commit + "\n\n" +
		"diff --git a/src/lib.rs b/src/lib.rs\n" +
		"index " + blobA + ".." + blobB + " 100644\n" +
		"--- a/src/lib.rs\n" +
		"+++ b/src/lib.rs\n" +
		"@@ -6,0 +7 @@ mod utils;\n" +
		"+mod transition_matrix;\n" +
		"diff --git a/src/transition_matrix.rs b/src/transition_matrix.rs\n" +
		"new file mode 100644\n" +
		"index " + zeroBlob + ".." + blobB + "\n" +
		"--- /dev/null\n" +
		"+++ b/src/transition_matrix.rs\n" +
		"@@ -0,0 +1,2 @@\n" +
		"+//! New.\n" +
		"+fn f() {}\n"
	gotCommit, files, problems := checkPatch(good)
	if len(problems) != 0 || gotCommit != commit || len(files) != 2 || files[1].added != 2 || !files[1].isNew {
		t.Fatalf("a good patch: commit %q, files %+v, problems %v", gotCommit, files, problems)
	}

	cases := []struct {
		name, old, new, want string
	}{
		{"no commit", commit, "d058dab7", "exactly one 40-hex"},
		{"two commits", "Applies to", "ed57a8fc8761ea18aad013365986f28883ae437b applies to", "exactly one 40-hex"},
		{"context line", "+mod transition_matrix;\n", "+mod transition_matrix;\n mod x;\n", "unexpected line"},
		{"removed line", "+mod transition_matrix;\n", "-mod utils;\n+mod transition_matrix;\n", "not an added line"},
		{"old count", "@@ -6,0 +7 @@", "@@ -6,1 +7 @@", "zero-context"},
		{"short hunk", "@@ -0,0 +1,2 @@", "@@ -0,0 +1,3 @@", "more added lines"},
		{"absolute path", "a/src/lib.rs b/src/lib.rs", "a//etc/passwd b//etc/passwd", "absolute"},
		{"escaping path", "a/src/lib.rs b/src/lib.rs", "a/../x.rs b/../x.rs", "inside the tree"},
		{"git dir", "a/src/lib.rs b/src/lib.rs", "a/.git/config b/.git/config", "inside .git"},
		{"different paths", "a/src/lib.rs b/src/lib.rs", "a/src/lib.rs b/src/main.rs", "same P"},
		{"deleted file", "+++ b/src/lib.rs", "+++ /dev/null", "must not delete"},
		{"abbreviated index", "index " + blobA + ".." + blobB, "index 1111111..2222222", "full 40-hex"},
		{"mode change", "new file mode 100644\n", "new file mode 100755\n", "unexpected line"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := strings.Replace(good, c.old, c.new, 1)
			if bad == good {
				t.Fatalf("the case does not change the patch")
			}
			_, _, problems := checkPatch(bad)
			if !strings.Contains(strings.Join(problems, "\n"), c.want) {
				t.Errorf("problems %q, want one containing %q", problems, c.want)
			}
		})
	}
}
