// Package p2kit_test checks that the repository's README stays true to
// the code: its route table against the API description the handler
// serves, and its Go blocks against the examples go test compiles and
// runs.
package p2kit_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// readmeRoute is one row of the README's route table.
type readmeRoute struct {
	number   int
	method   string
	path     string
	access   string // first word of "who": anyone, user or admin
	success  int
	statuses []int // the statuses of "errors besides the common ones"
}

// readmeRoutes parses the route table of README.md (the rows under the
// header that starts with "| # | method | path |").
func readmeRoutes(t *testing.T) []readmeRoute {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	start := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "| # | method | path |") })
	if start < 0 {
		t.Fatal("README.md has no route table (a header starting with \"| # | method | path |\")")
	}
	status := regexp.MustCompile(`\b[1-5][0-9][0-9]\b`)
	seeRoute := regexp.MustCompile(`^as route ([0-9]+)$`)
	var rows []readmeRoute
	for _, l := range lines[start+2:] {
		if !strings.HasPrefix(l, "|") {
			break
		}
		cells := strings.Split(strings.Trim(l, "|"), " | ")
		if len(cells) != 7 {
			t.Fatalf("route table row has %d cells, want 7: %s", len(cells), l)
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		n, err := strconv.Atoi(cells[0])
		if err != nil {
			t.Fatalf("route table row number %q: %v", cells[0], err)
		}
		path, _, _ := strings.Cut(cells[2], "[")
		r := readmeRoute{number: n, method: cells[1], path: path, access: strings.Fields(cells[3])[0]}
		if r.success, err = strconv.Atoi(status.FindString(cells[5])); err != nil {
			t.Fatalf("route %d: no success status in %q", n, cells[5])
		}
		if m := seeRoute.FindStringSubmatch(cells[6]); m != nil {
			other, _ := strconv.Atoi(m[1])
			if other < 1 || other >= n {
				t.Fatalf("route %d refers to route %d, which is not an earlier row", n, other)
			}
			r.statuses = rows[other-1].statuses
		} else {
			for _, s := range status.FindAllString(cells[6], -1) {
				v, _ := strconv.Atoi(s)
				if !slices.Contains(r.statuses, v) {
					r.statuses = append(r.statuses, v)
				}
			}
		}
		if n != len(rows)+1 {
			t.Fatalf("route table row %d follows row %d", n, len(rows))
		}
		rows = append(rows, r)
	}
	return rows
}

// TestREADMERouteTableMatchesAPIDescription checks each row of the
// README's route table against httpadapter/openapi.json (which
// httpadapter's tests check against the handler): same route numbers,
// methods, paths, access, success status, and the same route-specific
// error statuses (the common ones, 401, 403 on admin routes, 413, 429,
// 500 and 503, are stated once under the table).
func TestREADMERouteTableMatchesAPIDescription(t *testing.T) {
	data, err := os.ReadFile("httpadapter/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Route     int                        `json:"x-p2core-route"`
			Access    string                     `json:"x-p2core-access"`
			Responses map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	rows := readmeRoutes(t)
	found := 0
	for path, ops := range doc.Paths {
		for method, op := range ops {
			found++
			if op.Route < 1 || op.Route > len(rows) {
				t.Errorf("%s %s (route %d) has no row in the README's route table", strings.ToUpper(method), path, op.Route)
				continue
			}
			r := rows[op.Route-1]
			if r.method != strings.ToUpper(method) || r.path != path {
				t.Errorf("route %d: README says %s %s, the API description %s %s", op.Route, r.method, r.path, strings.ToUpper(method), path)
			}
			if r.access != op.Access {
				t.Errorf("route %d: README says %q may call it, the API description %q", op.Route, r.access, op.Access)
			}
			var want []int
			for code := range op.Responses {
				v, _ := strconv.Atoi(code)
				switch {
				case v >= 200 && v < 300:
					if v != r.success {
						t.Errorf("route %d: README says success %d, the API description %d", op.Route, r.success, v)
					}
				case v == 401 || v == 413 || v == 429 || v == 500 || v == 503:
				case v == 403 && op.Access == "admin":
				default:
					want = append(want, v)
				}
			}
			got := slices.Sorted(slices.Values(r.statuses))
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("route %d: README lists error statuses %v besides the common ones, the API description %v", op.Route, got, want)
			}
		}
	}
	if found != len(rows) {
		t.Errorf("README's route table has %d rows, the API description %d operations", len(rows), found)
	}
}

// goBlocks returns the fenced ```go blocks of a Markdown file, each with
// the line number it starts on.
func goBlocks(t *testing.T, name string) (blocks []string, lines []int) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var cur []string
	in := false
	for i, l := range strings.Split(string(data), "\n") {
		switch {
		case !in && strings.TrimSpace(l) == "```go":
			in, cur = true, nil
			lines = append(lines, i+1)
		case in && strings.TrimSpace(l) == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, l)
		}
	}
	if in {
		t.Fatalf("%s: unterminated ```go block from line %d", name, lines[len(lines)-1])
	}
	return blocks, lines
}

// codeLines is src without indentation, trailing space and blank lines:
// the form in which a README block and an example are compared.
func codeLines(src string) []string {
	var out []string
	for _, l := range strings.Split(src, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// TestREADMEGoBlocksAreCopiesOfExamples checks that every Go block of the
// README is a run of consecutive lines (indentation aside) of an example
// file (example_test.go or *_example_test.go) in the repository. go test
// compiles and runs those examples, so a README block that no longer
// compiles, or that drifts from the code, fails here.
func TestREADMEGoBlocksAreCopiesOfExamples(t *testing.T) {
	var examples = map[string][]string{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != "." {
			return filepath.SkipDir
		}
		if !d.IsDir() && (d.Name() == "example_test.go" || strings.HasSuffix(d.Name(), "_example_test.go")) {
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			examples[path] = codeLines(string(src))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(examples) == 0 {
		t.Fatal("no example files found")
	}
	blocks, starts := goBlocks(t, "README.md")
	if len(blocks) == 0 {
		t.Fatal("README.md has no ```go block")
	}
	for i, b := range blocks {
		want := codeLines(b)
		if len(want) == 0 {
			t.Errorf("README.md:%d: empty Go block", starts[i])
			continue
		}
		found := ""
		for path, have := range examples {
			for j := 0; j+len(want) <= len(have) && found == ""; j++ {
				if slices.Equal(have[j:j+len(want)], want) {
					found = path
				}
			}
		}
		if found == "" {
			t.Errorf("README.md:%d: Go block starting %q is not a copy of consecutive lines of any example file; copy it from the example it shows (and keep the example compiling)", starts[i], want[0])
		}
	}
}
