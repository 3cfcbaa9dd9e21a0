package auditlog

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLinesPlainGzipAndDirectories(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, gz bool) {
		var b bytes.Buffer
		if gz {
			w := gzip.NewWriter(&b)
			w.Write([]byte(content))
			w.Close()
		} else {
			b.WriteString(content)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// lumberjack names: timestamped backups (here one gzip without .gz in
	// its name) sort before the active file.
	write("audit-2026-11-27T08-00-00.000.log", `{"n":1}`+"\n\n"+`{"n":2}`+"\n", true)
	write("audit.log", "  {\"n\":3}  \n{\"n\":4}", false)
	os.Mkdir(filepath.Join(dir, "subdir"), 0o700)

	files, err := ExpandPaths([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || !strings.HasSuffix(files[1], "audit.log") {
		t.Fatalf("files %v", files)
	}
	var got []string
	for _, f := range files {
		err := Lines(f, func(line int, data []byte) error {
			got = append(got, filepath.Base(f)+":"+string(rune('0'+line))+":"+string(data))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"audit-2026-11-27T08-00-00.000.log:1:{\"n\":1}",
		"audit-2026-11-27T08-00-00.000.log:3:{\"n\":2}",
		"audit.log:1:{\"n\":3}",
		"audit.log:2:{\"n\":4}",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := ExpandPaths([]string{filepath.Join(dir, "missing")}); err == nil {
		t.Fatal("a missing path was accepted")
	}
	write("bad.gz", "\x1f\x8bnot gzip", false)
	if err := Lines(filepath.Join(dir, "bad.gz"), func(int, []byte) error { return nil }); err == nil {
		t.Fatal("a corrupt gzip file was read without error")
	}
}

func TestEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	content := strings.Join([]string{
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a"}`,
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"b"},{"auditID":"c"}]}`,
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[{"auditID":"d"},{},{"apiVersion":"audit.k8s.io/v1","auditID":"e"}]}`,
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`,
		`{"kind":"EventList","items":[{"auditID":"f"}`,
	}, "\n")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := Events(path, func(line, item int, data []byte) error {
		got = append(got, fmt.Sprintf("%d.%d %s", line, item, data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`1.0 {"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a"}`,
		`2.1 {"auditID":"b"}`,
		`2.2 {"auditID":"c"}`,
		`3.1 {"apiVersion":"audit.k8s.io/v1beta1","auditID":"d"}`,
		`3.2 {"apiVersion":"audit.k8s.io/v1beta1"}`,
		// The item's own apiVersion comes later and wins.
		`3.3 {"apiVersion":"audit.k8s.io/v1beta1","apiVersion":"audit.k8s.io/v1","auditID":"e"}`,
		// A list that does not decode is the decoder's to report.
		`5.0 {"kind":"EventList","items":[{"auditID":"f"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
