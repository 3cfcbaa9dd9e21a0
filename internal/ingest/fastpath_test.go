package ingest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// checkFastEvent holds the fast path to its contract on one item: when it
// accepts, the full decoder accepts too and yields the same key and
// deduplication key. It returns whether the fast path accepted.
func checkFastEvent(t testing.TB, item []byte) bool {
	t.Helper()
	var fe fastEvent
	fast := scanEvent(item, &fe)
	var full pipeline.Event
	err := full.Decode("c1", item)
	if !fast {
		return false
	}
	if err != nil {
		t.Fatalf("fast path accepted an event the full decoder rejects (%v):\n%s", err, item)
	}
	if got, want := "c1/"+fe.subject(), string(pipeline.MessageKey("c1", &full)); got != want {
		t.Fatalf("key %q, full decoder %q:\n%s", got, want, item)
	}
	if got, want := fe.contentHash(), full.Hash; got != want {
		t.Fatalf("content hash %x, full decoder %x:\n%s", got, want, item)
	}
	if fe.str[slotAuditID] != string(full.AuditID) || fe.str[slotStage] != string(full.Stage) {
		t.Fatalf("auditID/stage %q/%q, full decoder %q/%q", fe.str[slotAuditID], fe.str[slotStage], full.AuditID, full.Stage)
	}
	return true
}

func checkFastSplit(t testing.TB, body []byte) bool {
	t.Helper()
	fast, ok := splitFast(body, nil, nil)
	var pre []preEvent
	fast2, ok2 := splitFast(body, nil, &pre)
	if ok != ok2 || len(fast) != len(fast2) || len(pre) != len(fast2) && ok2 {
		t.Fatalf("split with and without scanning items differ: %v/%d, %v/%d/%d", ok, len(fast), ok2, len(fast2), len(pre))
	}
	if !ok2 {
		pre = nil
	}
	for i := range pre {
		if pre[i].ok != scanEvent(fast2[i], new(fastEvent)) {
			t.Fatalf("item %d: scanned in the split %v, alone %v", i, pre[i].ok, !pre[i].ok)
		}
		if pre[i].ok {
			checkFastEvent(t, fast2[i])
			var alone fastEvent
			scanEvent(fast2[i], &alone)
			if alone.contentHash() != pre[i].ev.contentHash() || alone.subject() != pre[i].ev.subject() {
				t.Fatalf("item %d: split scan and lone scan disagree", i)
			}
		}
	}
	full, err := pipeline.SplitEventList(body)
	if !ok {
		return false
	}
	if err != nil {
		t.Fatalf("fast split accepted a list the full decoder rejects (%v):\n%s", err, body)
	}
	if len(fast) != len(full) {
		t.Fatalf("fast split: %d items, full %d", len(fast), len(full))
	}
	for i := range fast {
		if !bytes.Equal(fast[i], full[i]) {
			t.Fatalf("item %d: fast %s, full %s", i, fast[i], full[i])
		}
	}
	return true
}

// TestFastPathMatchesFullDecode runs the realistic generated stream (every
// routine and attack scenario) through both paths: the fast path must take
// nearly all of it, and agree on every event.
func TestFastPathMatchesFullDecode(t *testing.T) {
	g := gen.New(gen.Config{Seed: 7, AttackRatio: 0.2})
	const n = 4000
	fast := 0
	var batch [][]byte
	for range n {
		ev := g.Next()
		if checkFastEvent(t, ev.JSON) {
			fast++
		}
		batch = append(batch, ev.JSON)
	}
	// Escaped user agents or URIs legitimately fall back; the stream has
	// very few of them.
	if fast < n*95/100 {
		t.Fatalf("fast path took %d of %d generated events, want at least 95%%", fast, n)
	}
	body := gen.EventList(batch[:400])
	if !checkFastSplit(t, body) {
		t.Fatal("fast split refused a generated EventList")
	}
	// Pretty-printed lists, as a log shipper might repost them, compact to
	// the same items.
	pretty := bytes.ReplaceAll(body, []byte(`,"items":[{`), []byte(",\n \"items\": [\n  {"))
	if !checkFastSplit(t, pretty) {
		t.Fatal("fast split refused a list with newlines between items")
	}
}

// TestFastPathEdgeCases lists inputs where encoding/json's rules are easy to
// get wrong. Each must either be handled exactly as the full decoder does,
// or be left to it (want "full").
func TestFastPathEdgeCases(t *testing.T) {
	base := `"auditID":"a1","stage":"ResponseComplete","verb":"get","requestURI":"/api","user":{"username":"alice"},"sourceIPs":["10.0.0.1"],"requestReceivedTimestamp":"2026-11-27T09:15:01.123456Z","stageTimestamp":"2026-11-27T09:15:01.2Z"`
	f := func(name, item, want string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			got := "full"
			if checkFastEvent(t, []byte(item)) {
				got = "fast"
			}
			if got != want {
				t.Fatalf("taken by the %s path, want %s:\n%s", got, want, item)
			}
		})
	}
	f("plain", `{`+base+`}`, "fast")
	f("kind and apiVersion", `{"kind":"Event","apiVersion":"audit.k8s.io/v1",`+base+`}`, "fast")
	f("wrong kind", `{"kind":"Pod",`+base+`}`, "full")
	f("wrong apiVersion", `{"apiVersion":"audit.k8s.io/v1beta1",`+base+`}`, "full")
	f("credential id", `{`+base+`,"user":{"username":"system:serviceaccount:a:b","extra":{"authentication.kubernetes.io/credential-id":["JTI=1"]}}}`, "full") // duplicate user key
	f("credential id once", `{"auditID":"a1","user":{"username":"system:serviceaccount:a:b","extra":{"x":["1"],"authentication.kubernetes.io/credential-id":["JTI=1","JTI=2"]}}}`, "fast")
	f("impersonated credential ignored", `{"auditID":"a1","user":{"username":"bob"},"impersonatedUser":{"username":"x","extra":{"authentication.kubernetes.io/credential-id":["JTI=9"]}}}`, "fast")
	f("case-folded key", `{"AuditID":"a2",`+base+`}`, "full")
	f("kelvin sign folds to k", "{\"\u212aind\":\"Event\","+base+"}", "full")
	f("escaped key", `{"audit\u0049D":"a2"}`, "full")
	f("duplicate key", `{`+base+`,"auditID":"a2"}`, "full")
	f("escaped auditID", `{"auditID":"a\"1\u00e9\/\n"}`, "fast")
	f("query string as the apiserver escapes it", `{"requestURI":"/api/v1/pods?limit=500\u0026watch=true","verb":"watch"}`, "fast")
	f("escaped surrogate pair", `{"userAgent":"\ud83d\ude00"}`, "full")
	f("escape elsewhere", `{`+base+`,"annotations":{"authorization.k8s.io/reason":"RBAC: allowed by \"x\""}}`, "fast")
	f("invalid utf-8 in user agent", "{\"userAgent\":\"curl\xff\"}", "full")
	f("null fields", `{"auditID":null,"user":null,"sourceIPs":null,"objectRef":null,"requestObject":null}`, "fast")
	f("null in sourceIPs", `{"sourceIPs":[null,"10.0.0.1"]}`, "full")
	f("code as string", `{`+base+`,"responseStatus":{"code":"200"}}`, "full")
	f("code as float", `{`+base+`,"responseStatus":{"code":200.0}}`, "full")
	f("code beyond int32", `{`+base+`,"responseStatus":{"code":2147483648}}`, "full")
	f("code at int32 max", `{`+base+`,"responseStatus":{"code":2147483647,"details":{"causes":[{"reason":"x"}],"retryAfterSeconds":1}}}`, "fast")
	f("objectRef of the wrong type", `{`+base+`,"objectRef":[]}`, "full")
	f("objectRef name a number", `{`+base+`,"objectRef":{"name":1}}`, "full")
	f("groups not strings", `{"user":{"groups":[1]}}`, "full")
	f("bad timestamp", `{"stageTimestamp":"yesterday"}`, "full")
	f("timestamp as number", `{"stageTimestamp":12}`, "full")
	f("timestamp without fraction", `{"stageTimestamp":"2026-11-27T09:15:01Z"}`, "fast")
	f("timestamp with offset", `{"stageTimestamp":"2026-11-27T11:15:01.5+02:00"}`, "fast")
	f("bodies of any shape", `{"requestObject":{"a":[1,2.5e3,true,false,null,{"b":"\u00e9"}]},"responseObject":"x"}`, "fast")
	f("invalid body", `{"requestObject":{"a":tru}}`, "full")
	f("unknown field", `{"futureField":{"x":[1]},"auditID":"a"}`, "fast")
	f("trailing garbage", `{"auditID":"a"} x`, "full")
	f("not an object", `["auditID"]`, "full")
	f("null event", `null`, "full")
	f("control character in string", "{\"verb\":\"g\tet\"}", "full")
	f("deep nesting", `{"requestObject":`+strings.Repeat("[", 600)+strings.Repeat("]", 600)+`}`, "full")
}

// FuzzFastPath holds the fast path to the full decoder on arbitrary input:
// whatever it accepts, the full decoder accepts with the same keys.
func FuzzFastPath(f *testing.F) {
	g := gen.New(gen.Config{Seed: 3, AttackRatio: 0.3})
	var batch [][]byte
	for range 40 {
		ev := g.Next()
		f.Add(ev.JSON)
		batch = append(batch, ev.JSON)
	}
	f.Add(gen.EventList(batch[:5]))
	f.Add([]byte(`{"kind":"EventList","items":[{"auditID":"a","user":{"extra":{"authentication.kubernetes.io/credential-id":["JTI=1"]}}}]}`))
	f.Add([]byte(`{"auditID":"a","AUDITID":"b","responseStatus":{"code":-2147483648}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFastEvent(t, data)
		checkFastSplit(t, data)
	})
}

func TestFastSplitEdgeCases(t *testing.T) {
	f := func(name, body string, wantFast bool) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			if got := checkFastSplit(t, []byte(body)); got != wantFast {
				t.Fatalf("fast = %v, want %v", got, wantFast)
			}
		})
	}
	f("webhook list", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{"auditID":"a"},{"auditID":"b"}]}`, true)
	f("empty items", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`, true)
	f("no items", `{"kind":"EventList"}`, false)
	f("null items", `{"kind":"EventList","items":null}`, false)
	f("wrong kind", `{"kind":"PodList","items":[]}`, false)
	f("case-folded items", `{"kind":"EventList","Items":[]}`, false)
	f("truncated", `{"kind":"EventList","items":[{"verb":`, false)
	f("not json", `hello`, false)
	f("item not an object", `{"items":[1,"x",null]}`, true)
	f("trailing comma", `{"items":[{},]}`, false)
	for i, s := range []string{"\n", "\r\n"} {
		f(fmt.Sprintf("newlines %d", i), `{"items":[{"a":`+s+`1}]}`, true)
	}
}
