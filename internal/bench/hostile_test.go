package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/ingest"
	"github.com/auditpipe/auditpipe/internal/redact"
)

// The hostile inputs are what a sender (a compromised or buggy apiserver,
// or anyone holding a webhook credential) can post to drive ingest's cost
// per byte up: long runs that look like tokens, deep nesting, strings made
// of escapes, and lists of tiny events. Each goes through the whole
// per-request path at three sizes; a path whose cost per byte grows with
// the size (the old redactor took 14 s on a 176 KiB token-like URI) shows
// as a 1 MiB row far slower per byte than its 1 KiB row.

// hostileSizes are the body sizes of each shape: a typical event, a large
// one, and the largest a single event can be before ingest truncates it.
var hostileSizes = []struct {
	name string
	n    int
}{
	{"1KiB", 1 << 10},
	{"64KiB", 64 << 10},
	{"1MiB", 1 << 20},
}

// hostileShape builds an EventList body of about size bytes.
type hostileShape struct {
	name  string
	build func(size int) []byte
}

// listPrefix and listSuffix wrap the items as the apiserver does.
const (
	listPrefix = `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`
	listSuffix = `]}`
)

// hostileEvent is a realistic ResponseComplete event around one hostile
// part: %[1]s is the requestURI, %[2]s the requestObject member (empty or
// `"requestObject":…,`).
const hostileEvent = `{"level":"RequestResponse","auditID":"5d0a7f3c-9b2e-4c1d-8e6f-2a4b6c8d0e1f","stage":"ResponseComplete",` +
	`"requestURI":"%[1]s","verb":"create","user":{"username":"alice@example.com","groups":["developers","system:authenticated"]},` +
	`"sourceIPs":["10.20.30.40"],"userAgent":"kubectl/v1.33.3 (linux/amd64) kubernetes/80779bd",` +
	`"objectRef":{"resource":"configmaps","namespace":"default","name":"settings","apiVersion":"v1"},` +
	`"responseStatus":{"metadata":{},"code":201},%[2]s` +
	`"requestReceivedTimestamp":"2026-11-27T09:08:00.050311Z","stageTimestamp":"2026-11-27T09:08:00.061479Z"}`

const hostileURI = "/api/v1/namespaces/default/configmaps"

// oneEvent returns the list of one hostileEvent.
func oneEvent(uri, requestObject string) []byte {
	if requestObject != "" {
		requestObject = `"requestObject":` + requestObject + ","
	}
	return []byte(listPrefix + fmt.Sprintf(hostileEvent, uri, requestObject) + listSuffix)
}

// fill repeats unit as many whole times as fit in room bytes, at least once.
func fill(unit string, room int) string {
	return strings.Repeat(unit, max(1, room/len(unit)))
}

// uriRun is a requestURI ending in a run of unit filling the body.
func uriRun(unit string) func(int) []byte {
	return func(size int) []byte {
		const prefix = "/api/v1/namespaces/default/pods/"
		room := size - len(oneEvent(prefix, ""))
		return oneEvent(prefix+fill(unit, room), "")
	}
}

// stringRun is a ConfigMap whose one value is a run of unit filling the
// body. unit is JSON string contents: escapes stay escapes.
func stringRun(unit string) func(int) []byte {
	return func(size int) []byte {
		obj := func(s string) string {
			return `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"settings","namespace":"default"},"data":{"value":"` + s + `"}}`
		}
		room := size - len(oneEvent(hostileURI, obj("")))
		return oneEvent(hostileURI, obj(fill(unit, room)))
	}
}

// nested is a requestObject of open repeated, then inner, then close
// repeated, as deep as the body allows: past encoding/json's 10,000 levels
// ingest refuses the event, which is measured like any other answer.
func nested(open, inner, close string) func(int) []byte {
	return func(size int) []byte {
		// One level measured and taken off again: an empty inner would
		// otherwise drop the member from the base.
		room := size - (len(oneEvent(hostileURI, open+inner+close)) - len(open) - len(close))
		depth := max(1, room/(len(open)+len(close)))
		return oneEvent(hostileURI, strings.Repeat(open, depth)+inner+strings.Repeat(close, depth))
	}
}

// minimalEvent is the smallest event with what every apiserver writes and
// ingest's validation requires (auditID, stage, level, both timestamps),
// the auditID numbered so that no two items of a list are the same event
// and every one is produced.
func minimalEvent(i int) string {
	return `{"auditID":"` + strconv.FormatInt(int64(i), 36) + `","stage":"Panic","level":"None",` +
		`"requestReceivedTimestamp":"2026-11-27T09:08:00Z","stageTimestamp":"2026-11-27T09:08:00Z"}`
}

// emptyEvent is the smallest item a sender can post: an object with no
// field. Without event validation ingest accepts it (every field is
// optional to the decoder, and the batch's own deduplication produces one
// of the identical items); with it, each item is a rejection to count and
// report.
func emptyEvent(int) string { return `{}` }

// items is an EventList of item(0), item(1), … as many as fit in size.
func items(item func(int) string) func(int) []byte {
	return func(size int) []byte {
		var b bytes.Buffer
		b.Grow(size)
		b.WriteString(listPrefix)
		for i := 0; ; i++ {
			it := item(i)
			if i > 0 && b.Len()+1+len(it)+len(listSuffix) > size {
				break
			}
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(it)
		}
		b.WriteString(listSuffix)
		return b.Bytes()
	}
}

var hostileShapes = []hostileShape{
	// Token-like runs: what the redactor searches for JWTs in.
	{"TokenURI", uriRun("eyJ")},
	{"TokenDots", stringRun("eyJ.")},
	{"Dots", stringRun("a.")},
	// Nesting: every level is a frame of every recursive scanner.
	{"DeepObject", nested(`{"a":`, `null`, `}`)},
	{"DeepArray", nested(`[`, ``, `]`)},
	// Escapes: every byte of the string takes the slow path.
	{"EscapeUnicode", stringRun(`\u0041`)},
	{"EscapeBackslash", stringRun(`\\`)},
	{"EscapeQuote", stringRun(`\"`)},
	// Many items: per-event overhead with no content to amortise it.
	{"TinyItems", items(minimalEvent)},
	{"EmptyItems", items(emptyEvent)},
}

// hostileMaxEventBytes keeps a 1 MiB event whole: with the default (1 MiB)
// an event that redaction grows past the limit would lose its bodies, and
// the row would measure truncation instead of the shape.
const hostileMaxEventBytes = 4 << 20

// hostileMaxEvents lets the 1 MiB EmptyItems body (about 350,000 items)
// through ingest's per-request event cap, so that the row measures the
// items rather than the 413 the default cap (10,000) answers.
const hostileMaxEvents = 1 << 19

// newHostileHandler is ingest as deployed, with a producer that accepts
// everything at once. Deduplication across requests is off: every round
// posts the same body, which the window would otherwise answer from memory.
func newHostileHandler(b testing.TB) *ingest.Handler {
	b.Helper()
	red, err := redact.New(redact.Config{})
	if err != nil {
		b.Fatal(err)
	}
	cfg := ingest.Config{
		DisableDedup:  true,
		MaxBodyBytes:  4 * hostileMaxEventBytes,
		MaxEventBytes: hostileMaxEventBytes,
	}
	setMaxEvents(&cfg, hostileMaxEvents)
	h, err := ingest.New(cfg, nopProducer{}, red, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// setMaxEvents sets Config.MaxEventsPerRequest when ingest has it: the cap
// is being added while these benchmarks are, and reflection keeps them
// compiling on either side of it. Without the field there is no cap to
// raise.
func setMaxEvents(cfg *ingest.Config, n int) {
	f := reflect.ValueOf(cfg).Elem().FieldByName("MaxEventsPerRequest")
	if f.IsValid() && f.CanSet() && f.CanInt() {
		f.SetInt(int64(n))
	}
}

// postHostile serves one request and returns the answer's status code.
func postHostile(h http.Handler, body []byte) int {
	req := httptest.NewRequest(http.MethodPost, "/audit", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

// hostileMaxRequest bounds what one row may cost: ingest's cost per byte
// being what these rows look for, a regression can make a single 1 MiB
// request take minutes, and a benchmark runs at least one.
var hostileMaxRequest = flag.Duration("hostile-max-request", 5*time.Second,
	"skip a BenchmarkHostile row when one request of it is predicted to take longer (it is reported as HostileNotRun)")

// predictRequest extrapolates the time of one request of size bytes from
// the rows already measured at smaller sizes (per-request times in measured,
// by size). From one row it assumes quadratic growth; from two, the growth
// they show, and never better than linear.
func predictRequest(measured map[int]time.Duration, size int) time.Duration {
	var sizes []int
	for n := range measured {
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	switch len(sizes) {
	case 0:
		return 0
	case 1:
		n, t := sizes[0], measured[sizes[0]]
		return time.Duration(float64(t) * math.Pow(float64(size)/float64(n), 2))
	}
	n0, n1 := sizes[len(sizes)-2], sizes[len(sizes)-1]
	t0, t1 := measured[n0], measured[n1]
	k := max(1, math.Log(float64(t1)/float64(t0))/math.Log(float64(n1)/float64(n0)))
	return time.Duration(float64(t1) * math.Pow(float64(size)/float64(n1), k))
}

// BenchmarkHostile posts each hostile shape at each size through the whole
// webhook handler: body read, split, redaction, validation, keys, produce.
// ns/B is what to compare across sizes: a linear path costs the same per
// byte at 1 MiB as at 1 KiB. status is the HTTP answer (400 where ingest
// refuses the event, as it must past the nesting limit).
//
// A row whose one request is predicted to exceed -hostile-max-request is
// not run; a line "HostileNotRun <row> <seconds predicted> ..." in the
// output says so, for the report to show as a failure rather than a gap.
func BenchmarkHostile(b *testing.B) {
	h := newHostileHandler(b)
	for _, shape := range hostileShapes {
		measured := map[int]time.Duration{}
		for _, size := range hostileSizes {
			// Built once per row, whatever b.N is: the ramp-up must not
			// make the input larger.
			body := shape.build(size.n)
			name := shape.name + "/" + size.name
			if p := predictRequest(measured, size.n); p > *hostileMaxRequest {
				fmt.Printf("HostileNotRun %s %.1f s/request predicted from the smaller sizes, over -hostile-max-request=%s\n",
					name, p.Seconds(), *hostileMaxRequest)
				continue
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				// One request before the clock starts (b.Loop resets it):
				// a 1 MiB row may run a single timed request, which would
				// otherwise also pay for growing the handler's pooled
				// buffers that the smaller rows reuse.
				code := postHostile(h, body)
				for b.Loop() {
					code = postHostile(h, body)
				}
				perOp := b.Elapsed() / time.Duration(b.N)
				measured[size.n] = perOp
				b.ReportMetric(float64(perOp.Nanoseconds())/float64(len(body)), "ns/B")
				b.ReportMetric(float64(code), "status")
			})
		}
	}
}

// TestHostileBodies keeps the hostile bodies what they claim: an EventList
// near its size (valid JSON where it is shallow enough for encoding/json),
// which ingest answers without a server error, and TinyItems' events valid.
func TestHostileBodies(t *testing.T) {
	h := newHostileHandler(t)
	for _, shape := range hostileShapes {
		for _, size := range hostileSizes[:2] {
			body := shape.build(size.n)
			if len(body) > size.n || len(body) < size.n-256 {
				t.Errorf("%s/%s: %d bytes, want about %d", shape.name, size.name, len(body), size.n)
			}
			if size.n == 1<<10 && !json.Valid(body) {
				t.Errorf("%s/%s: not valid JSON", shape.name, size.name)
			}
			code := postHostile(h, body)
			if code >= 500 || shape.name == "TinyItems" && code != http.StatusOK {
				t.Errorf("%s/%s: status %d", shape.name, size.name, code)
			}
		}
	}
}
