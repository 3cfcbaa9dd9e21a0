package pipeline

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
	"unicode/utf8"
)

// stdJSON is what encoding/json writes for v: json.Marshal with
// escapeHTML, else an Encoder without HTML escaping, minus its newline.
func stdJSON(t testing.TB, v any, escapeHTML bool) ([]byte, error) {
	t.Helper()
	if escapeHTML {
		return json.Marshal(v)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// nastyStrings are the cases of encoding/json's string encoding.
var nastyStrings = []string{
	"", "plain", `quote " backslash \ slash /`, "\b\f\n\r\t\x00\x01\x1f\x7f", "<script>&amp;</script>",
	"é ü 日本 🙂", "\u2028\u2029", "bad \xff\xfe utf8 \xe2\x82", "\xed\xa0\x80 surrogate", "\U0010FFFF",
	"system:serviceaccount:kube-system:default", "kubectl/v1.34.0 (linux/amd64) kubernetes/80779bd",
}

func randomString(r *rand.Rand) string {
	if r.IntN(3) == 0 {
		return nastyStrings[r.IntN(len(nastyStrings))]
	}
	b := make([]byte, r.IntN(40))
	for i := range b {
		switch r.IntN(4) {
		case 0:
			b[i] = byte(r.IntN(256))
		case 1:
			b[i] = byte(r.IntN(0x20))
		default:
			b[i] = byte(0x20 + r.IntN(0x5f))
		}
	}
	if r.IntN(4) == 0 {
		b = utf8.AppendRune(b, rune(r.IntN(0x110000)))
	}
	return string(b)
}

func randomFinding(r *rand.Rand) Finding {
	zones := []*time.Location{time.UTC, time.FixedZone("x", 5*3600+30*60), time.FixedZone("y", -8*3600), time.FixedZone("z", 23*3600+59*60)}
	f := Finding{
		ID: randomString(r), Cluster: randomString(r), Detector: randomString(r), Severity: Severity(r.IntN(7)),
		AuditID: randomString(r), Stage: randomString(r), Summary: randomString(r), Username: randomString(r),
		CredentialID: randomString(r), SourceIP: randomString(r), UserAgent: randomString(r), Verb: randomString(r),
		RequestURI: randomString(r), Resource: randomString(r), Subresource: randomString(r), Namespace: randomString(r),
		Name: randomString(r), Code: r.Int32() - r.Int32(), MITRE: randomString(r),
		Time: time.Unix(r.Int64N(1<<35), r.Int64N(1e9)*int64(r.IntN(2))).In(zones[r.IntN(len(zones))]),
	}
	switch r.IntN(3) {
	case 0:
		f.Evidence = []Evidence{}
	case 1:
		for range r.IntN(4) + 1 {
			f.Evidence = append(f.Evidence, Evidence{Field: randomString(r), Value: randomString(r), Source: randomString(r)})
		}
	}
	switch r.IntN(3) {
	case 0:
		f.Groups = []string{}
	case 1:
		for range r.IntN(4) + 1 {
			f.Groups = append(f.Groups, randomString(r))
		}
	}
	if r.IntN(10) == 0 {
		f.Time = time.Time{}
	}
	return f
}

// TestFindingAppendJSONMatchesEncodingJSON compares AppendJSON and
// AppendEvidenceJSON with encoding/json over 20,000 random findings, with
// and without HTML escaping, and the times encoding/json refuses.
func TestFindingAppendJSONMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	fs := make([]Finding, 20000)
	for i := range fs {
		fs[i] = randomFinding(r)
	}
	fs = append(fs,
		Finding{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		Finding{Time: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		Finding{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 24*3600))},
	)
	var buf []byte
	for i := range fs {
		for _, html := range []bool{true, false} {
			want, wantErr := stdJSON(t, &fs[i], html)
			got, err := fs[i].AppendJSON(buf[:0], html)
			if (err != nil) != (wantErr != nil) || err != nil && err.Error() != wantErr.Error() {
				t.Fatalf("finding %d: error %v, encoding/json %v", i, err, wantErr)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("finding %d (html %v):\n got %s\nwant %s", i, html, got, want)
			}
			buf = got
			wantEv, _ := stdJSON(t, fs[i].Evidence, html)
			if gotEv := AppendEvidenceJSON(nil, fs[i].Evidence, html); !bytes.Equal(gotEv, wantEv) {
				t.Fatalf("evidence of finding %d:\n got %s\nwant %s", i, gotEv, wantEv)
			}
		}
	}
}

// FuzzFindingJSON: for any strings, AppendJSON writes what encoding/json
// does.
func FuzzFindingJSON(f *testing.F) {
	for _, s := range nastyStrings {
		f.Add(s, s, int64(0))
	}
	f.Fuzz(func(t *testing.T, a, b string, sec int64) {
		fd := Finding{ID: a, Summary: b, Groups: []string{a, b}, Evidence: []Evidence{{Field: b, Value: a, Source: b}},
			Time: time.Unix(sec, 0).UTC()}
		for _, html := range []bool{true, false} {
			want, wantErr := stdJSON(t, &fd, html)
			got, err := fd.AppendJSON(nil, html)
			if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
				t.Fatalf("html %v:\n got %s (%v)\nwant %s (%v)", html, got, err, want, wantErr)
			}
		}
	})
}

func BenchmarkFindingJSON(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	fs := make([]Finding, 256)
	for i := range fs {
		fs[i] = Finding{ID: "3f9a1c0e5b7d2a4c6e8f0a1b2c3d4e5f", Time: time.Now().UTC(), Cluster: "prod", Detector: "rule:privileged-pod",
			Severity: SeverityHigh, AuditID: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", Stage: "ResponseComplete",
			Summary: "alice created privileged pod team/web-0", Username: "alice@example.com", Groups: []string{"dev", "system:authenticated"},
			Evidence: []Evidence{{Field: "spec.containers[*].securityContext.privileged", Value: "[true]", Source: FromRequest}, {Field: "tags", Value: "pod,privileged", Source: "rule"}},
			SourceIP: "203.0.113.9", UserAgent: "kubectl/v1.34.0 (linux/amd64) kubernetes/80779bd", Verb: "create",
			RequestURI: "/api/v1/namespaces/team/pods", Resource: "pods", Namespace: "team", Name: "web-" + randomString(r)[:0], Code: 201, MITRE: "T1610"}
	}
	b.Run("EncodingJSON", func(b *testing.B) {
		b.ReportAllocs()
		enc := json.NewEncoder(&bytes.Buffer{})
		for i := 0; b.Loop(); i++ {
			if err := enc.Encode(&fs[i%len(fs)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for i := 0; b.Loop(); i++ {
			buf, _ = fs[i%len(fs)].AppendJSON(buf[:0], false)
		}
	})
}

// TestFindingIDIsStable pins ids computed before FindingID stopped
// allocating: stored findings keep their ids, and an input longer than the
// stack buffer hashes the same.
func TestFindingIDIsStable(t *testing.T) {
	f := func(want, detector, cluster, auditID string, hash uint64, disc string) {
		t.Helper()
		if got := FindingID(detector, cluster, auditID, hash, disc); got != want {
			t.Errorf("FindingID(%q, %q, %q, %x, %d bytes) = %s, want %s", detector, cluster, auditID, hash, len(disc), got, want)
		}
	}
	f("4e95776a948eb8020d0e913e951bcfa3", "rule:exec-into-pod", "prod", "5f1c2d4e-0000-4000-8000-000000000001", 0x1234abcd5678ef90, "container:app")
	f("bc6c85320bb6da6360bf661947719def", "", "", "", 0, "")
	f("de977e9d75c2addf718d242a0180368f", "d", "c\x00", "a", ^uint64(0), string(make([]byte, 300)))
	if n := testing.AllocsPerRun(100, func() { FindingID("rule:x", "prod", "id", 1, "") }); n != 1 {
		t.Errorf("FindingID allocates %v times, want 1 (its string)", n)
	}
}

// TestAppendJSONStringEveryPosition: a byte that needs a look, at any
// position of a plain string of any length up to three words (the word
// loop, its overlapping last word, the bytewise check of short strings),
// is encoded as encoding/json encodes it; so is the plain string.
func TestAppendJSONStringEveryPosition(t *testing.T) {
	plain := "abcdefghijklmnopqrstuvwx"
	for n := 0; n <= len(plain); n++ {
		for _, html := range []bool{true, false} {
			for pos := -1; pos < n; pos++ {
				for _, bad := range []string{`"`, `\`, "\n", "\x00", "\x1f", "\x7f", "<", ">", "&", "é", "\xff", "\u2028"} {
					s := plain[:n]
					if pos >= 0 {
						s = s[:pos] + bad + s[pos+1:]
					}
					want, err := stdJSON(t, s, html)
					if err != nil {
						t.Fatal(err)
					}
					if got := AppendJSONString(nil, s, html); !bytes.Equal(got, want) {
						t.Fatalf("AppendJSONString(%q, html %v) = %s, want %s", s, html, got, want)
					}
				}
			}
		}
	}
}
