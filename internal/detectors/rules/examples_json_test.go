package rules

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// TestExampleJSONMatchesDecoded: for every mapping in the shipped pack and
// the test rule files, and for YAML that takes the fallback, exampleJSON
// writes what yaml's Decode and json.Marshal make of it, byte for byte, or
// declines. The snippets that must decline (aliases, merge keys, floats,
// other integer forms, duplicate keys) would otherwise come out different.
func TestExampleJSONMatchesDecoded(t *testing.T) {
	var docs [][]byte
	if err := fs.WalkDir(pack, "default", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".yaml" {
			return err
		}
		b, err := pack.ReadFile(path)
		docs = append(docs, b)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	snippets := map[string]bool{ // snippet: exampleJSON takes it
		`{verb: get, user: {username: "a<b>&c", groups: [x, "y\u2028"]}, code: 403, ok: true, no: false, n: null, e: ~, neg: -12}`: true,
		`{verb: get, objectRef: {name: !!str 123}}`:                        true,
		`{verb: get, level: Metadata, stage: ResponseStarted, auditID: a}`: true,
		`{verb: get, z: [], y: {}, "": 1}`:                                 true,
		`{verb: get, a: &x {b: 1}, c: *x}`:                                 false,
		`{verb: get, <<: {b: 1}}`:                                          false,
		`{verb: get, f: 1.5}`:                                              false,
		`{verb: get, i: 0x1f}`:                                             false,
		`{verb: get, j: 1_000}`:                                            false,
		`{verb: get, k: +3}`:                                               false,
		`{verb: get, l: 012}`:                                              false,
		`{verb: get, m: -0}`:                                               false,
		`{verb: get, n: 1234567890123456789}`:                              false,
		`{verb: get, b: yes, c: True}`:                                     false,
		`{verb: get, verb: list}`:                                          false,
		`{verb: get, 1: x}`:                                                false,
		`{verb: get, t: !custom x}`:                                        false,
		`[verb, get]`:                                                      false,
	}
	for s := range snippets {
		docs = append(docs, []byte(s))
	}
	mappings := 0
	for _, doc := range docs {
		var root yaml.Node
		if err := yaml.Unmarshal(doc, &root); err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		var walk func(n *yaml.Node)
		walk = func(n *yaml.Node) {
			if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
				got, ok := exampleJSON(n)
				if want, isSnippet := snippets[string(doc)]; isSnippet && n == root.Content[0] && ok != want {
					t.Errorf("exampleJSON(%s) took it: %v, want %v", doc, ok, want)
				}
				if ok {
					mappings++
					want, err := exampleEventDecoded(n)
					if err != nil || !bytes.Equal(got, want) {
						t.Errorf("line %d:\n got %s\nwant %s (%v)", n.Line, got, want, err)
					}
				}
			}
			for _, c := range n.Content {
				walk(c)
			}
		}
		walk(&root)
	}
	if mappings < 100 {
		t.Errorf("compared %d mappings; the pack alone has hundreds", mappings)
	}
}
