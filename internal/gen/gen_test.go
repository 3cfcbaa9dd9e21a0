package gen

import (
	"bytes"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// generate returns n events of cfg.
func generate(cfg Config, n int) []Event {
	g := New(cfg)
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = g.Next()
	}
	return evs
}

// decoded is a generated event with its decoding.
type decoded struct {
	Event
	ev pipeline.Event
}

func decodeAll(t *testing.T, evs []Event) []decoded {
	t.Helper()
	out := make([]decoded, len(evs))
	for i, e := range evs {
		out[i].Event = e
		if err := auditjson.Decode(&out[i].ev, "demo", e.JSON); err != nil {
			t.Fatalf("event %d does not decode: %v\n%s", i, err, e.JSON)
		}
	}
	return out
}

func TestDeterministic(t *testing.T) {
	cfg := Config{Seed: 7, AttackRatio: 0.1}
	a, b := generate(cfg, 3000), generate(cfg, 3000)
	for i := range a {
		if !bytes.Equal(a[i].JSON, b[i].JSON) || a[i].Scenario != b[i].Scenario || !slices.Equal(a[i].Expect, b[i].Expect) {
			t.Fatalf("event %d differs between two generators with the same seed:\n%s\n%s", i, a[i].JSON, b[i].JSON)
		}
	}
	c := generate(Config{Seed: 8, AttackRatio: 0.1}, 3000)
	same := 0
	for i := range a {
		if bytes.Equal(a[i].JSON, c[i].JSON) {
			same++
		}
	}
	if same > 0 {
		t.Errorf("seeds 7 and 8 produced %d identical events; want a different stream", same)
	}
}

var microRE = regexp.MustCompile(`"(requestReceivedTimestamp|stageTimestamp)":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"`)

// TestEventsShape checks every event against what the apiserver writes:
// decodable by the pipeline, one line, microsecond timestamps, and the
// per-stage and per-level rules of audit.k8s.io/v1.
func TestEventsShape(t *testing.T) {
	evs := decodeAll(t, generate(Config{Seed: 1, AttackRatio: 0.05}, 10000))
	var last time.Time
	for i, d := range evs {
		e, js := &d.ev, d.JSON
		if bytes.IndexByte(js, '\n') >= 0 || !bytes.HasPrefix(js, []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1",`)) {
			t.Fatalf("event %d is not one line starting with kind and apiVersion: %s", i, js)
		}
		if got := len(microRE.FindAll(js, -1)); got != 2 {
			t.Fatalf("event %d has %d RFC 3339 microsecond timestamps, want 2: %s", i, got, js)
		}
		if string(e.AuditID) != d.AuditID || e.Stage != d.Stage || !e.StageTimestamp.Time.Equal(d.Time) {
			t.Fatalf("event %d: Event fields (%s %s %v) disagree with its JSON: %s", i, d.AuditID, d.Stage, d.Time, js)
		}
		if d.Time.Before(last) {
			t.Fatalf("event %d at %v comes after one at %v: the stream must be in stageTimestamp order", i, d.Time, last)
		}
		last = d.Time
		if e.StageTimestamp.Before(&e.RequestReceivedTimestamp) {
			t.Fatalf("event %d: stageTimestamp before requestReceivedTimestamp: %s", i, js)
		}
		if e.Stage == auditv1.StageRequestReceived {
			if e.ResponseStatus != nil || e.Decision() != "" || e.RequestObject != nil {
				t.Fatalf("event %d: RequestReceived must carry no response, authorization or body: %s", i, js)
			}
		} else if e.ResponseStatus == nil || e.Code() == 0 {
			t.Fatalf("event %d: stage %s without a response code: %s", i, e.Stage, js)
		}
		if e.Level == auditv1.LevelMetadata && (e.RequestObject != nil || e.ResponseObject != nil) {
			t.Fatalf("event %d: Metadata level with a body: %s", i, js)
		}
		if e.Level == auditv1.LevelRequest && e.ResponseObject != nil {
			t.Fatalf("event %d: Request level with a response body: %s", i, js)
		}
		if e.ObjectRef == nil && (e.RequestObject != nil || e.ResponseObject != nil) {
			t.Fatalf("event %d: non-resource request with a body: %s", i, js)
		}
		if e.IsFailedAuthentication() != (e.Code() == 401) {
			t.Fatalf("event %d: a 401 must be a failed authentication with user {}: %s", i, js)
		}
	}
}

// TestStagesOfARequest checks that the stages of one request share its
// auditID and request fields and come in the order and combination the
// apiserver emits.
func TestStagesOfARequest(t *testing.T) {
	evs := decodeAll(t, generate(Config{Seed: 3, Rate: 20, AttackRatio: 0.05}, 10000))
	byID := map[string][]decoded{}
	var order []string
	for _, d := range evs {
		if _, ok := byID[d.AuditID]; !ok {
			order = append(order, d.AuditID)
		}
		byID[d.AuditID] = append(byID[d.AuditID], d)
	}
	// Requests that began within the last second may not have completed
	// when the stream was cut.
	cutoff := evs[len(evs)-1].Time.Add(-time.Second)
	shapes := map[string]int{}
	for _, id := range order {
		stages := byID[id]
		first := &stages[0].ev
		var names []string
		for _, s := range stages {
			e := &s.ev
			names = append(names, string(e.Stage))
			if e.RequestURI != first.RequestURI || e.Verb != first.Verb || e.User.Username != first.User.Username ||
				!e.RequestReceivedTimestamp.Equal(&first.RequestReceivedTimestamp) || s.Scenario != stages[0].Scenario {
				t.Fatalf("stages of %s disagree:\n%s\n%s", id, stages[0].JSON, s.JSON)
			}
		}
		shape := strings.Join(names, ",")
		switch shape {
		case "RequestReceived,ResponseComplete", "RequestReceived,Panic":
			if first.IsLongRunning() {
				t.Errorf("long-running request %s without ResponseStarted: %s", id, shape)
			}
		case "RequestReceived,ResponseStarted,ResponseComplete", "RequestReceived,ResponseStarted":
			if !first.IsLongRunning() {
				t.Errorf("request %s (%s %s) has ResponseStarted but is not long-running", id, first.Verb, first.RequestURI)
			}
		case "ResponseStarted":
			if !first.IsFailedAuthentication() {
				t.Errorf("lone ResponseStarted %s is not a failed authentication: %s", id, stages[0].JSON)
			}
		case "RequestReceived":
			if first.RequestReceivedTimestamp.Time.Before(cutoff) && !first.IsLongRunning() {
				t.Errorf("request %s received at %v never completed", id, first.RequestReceivedTimestamp)
			}
		default:
			t.Errorf("request %s has stages %s", id, shape)
		}
		shapes[shape]++
	}
	for _, want := range []string{"RequestReceived,ResponseComplete", "RequestReceived,ResponseStarted", "ResponseStarted", "RequestReceived,ResponseStarted,ResponseComplete"} {
		if shapes[want] == 0 {
			t.Errorf("no request with stages %s in 10000 events; got %v", want, shapes)
		}
	}
}

// TestScenarioLabels checks that every attack scenario occurs, that Expect
// sits only on the authoritative stage, and that what each label promises
// is really in the event (per the audit facts in KEPS.md).
func TestScenarioLabels(t *testing.T) {
	evs := decodeAll(t, generate(Config{Seed: 5, AttackRatio: 0.2}, 10000))
	expected := map[string]int{}
	lookalikes := 0
	for _, d := range evs {
		e := &d.ev
		if len(d.Expect) > 0 && !e.IsAuthoritative() {
			t.Fatalf("Expect on a %s stage, which detectors never judge: %s", e.Stage, d.JSON)
		}
		if d.Scenario == "" && len(d.Expect) > 0 {
			t.Fatalf("routine event with Expect %v: %s", d.Expect, d.JSON)
		}
		if strings.HasPrefix(d.Scenario, LookalikePrefix) {
			lookalikes++
			if len(d.Expect) > 0 {
				t.Fatalf("look-alike with Expect %v: %s", d.Expect, d.JSON)
			}
			if !slices.Contains([]string{"/healthz", "/livez", "/readyz", "/version"}, e.RequestURI) || e.User.Username != "system:anonymous" {
				t.Fatalf("look-alike %s is not an anonymous health probe: %s", d.Scenario, d.JSON)
			}
		}
		for _, id := range d.Expect {
			expected[id]++
			if msg := checkExpect(id, e); msg != "" {
				t.Fatalf("Expect %s: %s: %s", id, msg, d.JSON)
			}
		}
	}
	for _, s := range Scenarios() {
		if expected[s] == 0 {
			t.Errorf("scenario %s never expected in 10000 events at AttackRatio 0.2; got %v", s, expected)
		}
	}
	if lookalikes == 0 {
		t.Error("no look-alike events")
	}
}

// checkExpect returns what is wrong with ev as an instance of detector id's
// bad case, or "".
func checkExpect(id string, ev *pipeline.Event) string {
	raw := ""
	if ev.RequestObject != nil {
		raw = string(ev.RequestObject.Raw)
	}
	switch id {
	case ScenarioAnonymousAccess:
		if ev.User.Username != "system:anonymous" || slices.Contains([]string{"/healthz", "/livez", "/readyz", "/version"}, ev.RequestURI) {
			return "not anonymous, or an allowed health path"
		}
	case ScenarioStaleToken:
		if !strings.HasPrefix(ev.Annotations["authentication.k8s.io/stale-token"], "subject: system:serviceaccount:") || ev.CredentialID() == "" {
			return "no stale-token annotation or no credential-id"
		}
	case ScenarioLegacyToken:
		if ev.Annotations["authentication.k8s.io/legacy-token"] == "" && ev.Annotations["authentication.k8s.io/legacy-token-invalidated"] == "" {
			return "no legacy-token annotation"
		}
	case ScenarioTokenReplay:
		if !strings.HasPrefix(ev.CredentialID(), "JTI=") || !strings.HasPrefix(ev.User.Username, "system:serviceaccount:") {
			return "not a bound service-account token"
		}
	case ScenarioUnsecuredImagePull:
		resp := string(ev.ResponseObject.Raw)
		if !strings.Contains(resp, `"imagePullPolicy":"IfNotPresent"`) || strings.Contains(resp, "imagePullSecrets") ||
			!strings.Contains(resp, "registry.internal.example.com/") {
			return "not a private IfNotPresent image without pull secrets"
		}
	case ScenarioUnsignedJWT:
		if !strings.Contains(raw, `"token":"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.`) {
			return "no alg:none token in requestObject.spec.token"
		}
	case ScenarioBroadSelector:
		if strings.Contains(ev.RequestURI, "Selector=") || ev.ObjectRef == nil || ev.ObjectRef.Resource != "secrets" ||
			(ev.Verb != "list" && ev.Verb != "watch") || (ev.ObjectRef.Namespace != "" && ev.User.Username != "system:anonymous") {
			return "not an unnarrowed list or watch of secrets"
		}
	case ScenarioAppArmorUnconfined:
		if !strings.Contains(raw, `"appArmorProfile":{"type":"Unconfined"}`) {
			return "no Unconfined appArmorProfile in the request"
		}
	case ScenarioAdmissionPolicyChange:
		if ev.ObjectRef == nil || ev.ObjectRef.APIGroup != "admissionregistration.k8s.io" || ev.Verb != "delete" {
			return "not a delete in admissionregistration.k8s.io"
		}
	default:
		return "unknown detector id"
	}
	return ""
}

// TestRoutineIsQuiet checks the properties of routine traffic that keep
// detectors quiet on it: each bound credential is used from one address,
// private images are pulled with secrets, no pod opts out of AppArmor,
// secrets are only listed or watched with a selector.
func TestRoutineIsQuiet(t *testing.T) {
	evs := decodeAll(t, generate(Config{Seed: 9}, 10000))
	ipOf := map[string]string{}
	for _, d := range evs {
		e := &d.ev
		if d.Scenario != "" && !strings.HasPrefix(d.Scenario, LookalikePrefix) {
			t.Fatalf("AttackRatio 0 produced scenario %s", d.Scenario)
		}
		if id := e.CredentialID(); strings.HasPrefix(id, "JTI=") {
			if ip, ok := ipOf[id]; ok && ip != e.SourceIP() {
				t.Fatalf("credential %s used from %s and %s", id, ip, e.SourceIP())
			}
			ipOf[id] = e.SourceIP()
		}
		for k := range e.Annotations {
			if strings.HasPrefix(k, "authentication.k8s.io/") {
				t.Fatalf("routine event with %s: %s", k, d.JSON)
			}
		}
		if e.ResponseObject != nil {
			resp := string(e.ResponseObject.Raw)
			if strings.Contains(resp, `"type":"Unconfined"`) {
				t.Fatalf("routine pod is Unconfined: %s", d.JSON)
			}
			if strings.Contains(resp, `"image":"registry.internal.example.com/`) && !strings.Contains(resp, `"imagePullSecrets"`) {
				t.Fatalf("routine pod pulls a private image without a secret: %s", d.JSON)
			}
		}
		if e.ObjectRef != nil && e.ObjectRef.Resource == "secrets" && (e.Verb == "list" || e.Verb == "watch") &&
			!strings.Contains(e.RequestURI, "Selector=") {
			t.Fatalf("routine unnarrowed %s of secrets: %s", e.Verb, d.JSON)
		}
		if e.User.Username == "system:anonymous" && d.Scenario != LookalikeAnonymousHealth {
			t.Fatalf("routine anonymous request outside the health look-alikes: %s", d.JSON)
		}
	}
	if len(ipOf) < 5 {
		t.Errorf("only %d bound credentials in routine traffic; want several workloads", len(ipOf))
	}
}

// TestAttackRatio counts the requests that belong to an attack: the share
// must match the configuration within four standard deviations.
func TestAttackRatio(t *testing.T) {
	f := func(ratio float64) {
		t.Helper()
		seen := map[string]bool{}
		requests, attacks := 0, 0
		for _, e := range generate(Config{Seed: 11, AttackRatio: ratio}, 10000) {
			if seen[e.AuditID] {
				continue
			}
			seen[e.AuditID] = true
			requests++
			if e.Scenario != "" && !strings.HasPrefix(e.Scenario, LookalikePrefix) {
				attacks++
			}
		}
		got := float64(attacks) / float64(requests)
		tol := 4 * math.Sqrt(ratio*(1-ratio)/float64(requests))
		if math.Abs(got-ratio) > tol {
			t.Errorf("AttackRatio %v: %d of %d requests are attacks (%.4f), want within %.4f", ratio, attacks, requests, got, tol)
		}
	}
	f(0)
	f(0.01)
	f(0.1)
	f(0.5)
	f(1)
}

// TestSizesAndLevels checks the size distribution and level mix: most
// events between 0.4 and 5 KB, a few larger RequestResponse ones, all three
// levels present with Metadata the most common.
func TestSizesAndLevels(t *testing.T) {
	evs := decodeAll(t, generate(Config{Seed: 13, AttackRatio: 0.02}, 10000))
	inRange, large := 0, 0
	levels := map[auditv1.Level]int{}
	for _, d := range evs {
		n := len(d.JSON)
		switch {
		case n > 64<<10:
			t.Fatalf("event of %d bytes; the generator should not write events over 64 KiB: %.300s", n, d.JSON)
		case n > 5<<10:
			large++
		case n >= 400:
			inRange++
		}
		levels[d.ev.Level]++
	}
	if frac := float64(inRange) / float64(len(evs)); frac < 0.95 {
		t.Errorf("%.3f of events are 400 B to 5 KiB; want at least 0.95", frac)
	}
	if frac := float64(large) / float64(len(evs)); frac < 0.005 || frac > 0.05 {
		t.Errorf("%.4f of events are over 5 KiB; want a few (0.5%% to 5%%)", frac)
	}
	if levels[auditv1.LevelMetadata] <= levels[auditv1.LevelRequest] || levels[auditv1.LevelRequest] == 0 || levels[auditv1.LevelRequestResponse] == 0 {
		t.Errorf("level mix %v: want Metadata most common, and Request and RequestResponse present", levels)
	}
}

// TestRate checks that event time advances at Config.Rate events per second.
func TestRate(t *testing.T) {
	f := func(rate float64) {
		t.Helper()
		start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		evs := generate(Config{Seed: 2, Rate: rate, Start: start}, 20000)
		if evs[0].Time.Before(start) {
			t.Errorf("first event at %v, before Start %v", evs[0].Time, start)
		}
		span := evs[len(evs)-1].Time.Sub(start).Seconds()
		got := float64(len(evs)) / span
		if math.Abs(got-rate)/rate > 0.1 {
			t.Errorf("Rate %v: got %.1f events per second of event time", rate, got)
		}
	}
	f(10)
	f(100)
	f(5000)
}

// TestEventList checks the webhook body: an EventList the pipeline accepts,
// whose items omit kind and apiVersion as the webhook backend's do.
func TestEventList(t *testing.T) {
	evs := generate(Config{Seed: 4, AttackRatio: 0.1}, 400)
	raw := make([][]byte, len(evs))
	for i, e := range evs {
		raw[i] = e.JSON
	}
	body := EventList(raw)
	if !bytes.HasPrefix(body, []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{"level":`)) {
		t.Fatalf("body starts %.120s", body)
	}
	items, err := auditjson.SplitEventList(body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := auditjson.DecodeEvents(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != len(evs) || len(got) != len(evs) {
		t.Fatalf("got %d items, %d events; want %d", len(items), len(got), len(evs))
	}
	for i := range got {
		if bytes.Contains(items[i], []byte(`"kind"`)) && bytes.HasPrefix(items[i], []byte(`{"kind"`)) {
			t.Fatalf("item %d keeps its kind: %.80s", i, items[i])
		}
		if string(got[i].AuditID) != evs[i].AuditID || got[i].Stage != evs[i].Stage {
			t.Fatalf("item %d is %s/%s, want %s/%s", i, got[i].AuditID, got[i].Stage, evs[i].AuditID, evs[i].Stage)
		}
	}
	if got := EventList(nil); string(got) != `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}` {
		t.Errorf("EventList(nil) = %s", got)
	}
}

// BenchmarkNext reports how fast the generator produces events; it feeds
// the pipeline's benchmarks, so it must stay far ahead of decoding.
func BenchmarkNext(b *testing.B) {
	g := New(Config{Seed: 1, AttackRatio: DefaultAttackRatio})
	var bytes int64
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		bytes += int64(len(g.Next().JSON))
	}
	b.SetBytes(bytes / int64(b.N))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
