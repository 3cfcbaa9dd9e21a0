package gen

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/auditjson"
	"github.com/auditpipe/auditpipe/internal/pipeline"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// The shared fixtures live at the repository root so every package can
// read them; these tests keep them decodable and documented.
const testdataDir = "../../testdata"

// TestFixtureEvents decodes every hand-written event and checks the
// property its name promises.
func TestFixtureEvents(t *testing.T) {
	type want struct {
		stage         auditv1.Stage
		level         auditv1.Level
		authoritative bool
		check         func(e *pipeline.Event) bool
	}
	rr, rc, rs := auditv1.StageRequestReceived, auditv1.StageResponseComplete, auditv1.StageResponseStarted
	md, rq, rqrs := auditv1.LevelMetadata, auditv1.LevelRequest, auditv1.LevelRequestResponse
	anon := func(e *pipeline.Event) bool { return e.User.Username == "system:anonymous" }
	ann := func(k string) func(e *pipeline.Event) bool {
		return func(e *pipeline.Event) bool { return e.Annotations[k] != "" }
	}
	bound := func(e *pipeline.Event) bool {
		return strings.HasPrefix(e.CredentialID(), "JTI=") && e.Extra(pipeline.ExtraPodName) != "" &&
			e.Extra(pipeline.ExtraPodUID) != "" && e.Extra(pipeline.ExtraNodeName) != "" && e.Extra(pipeline.ExtraNodeUID) != ""
	}
	body := func(s string) func(e *pipeline.Event) bool {
		return func(e *pipeline.Event) bool {
			return e.RequestObject != nil && bytes.Contains(e.RequestObject.Raw, []byte(s))
		}
	}
	raw := func(re string) func(e *pipeline.Event) bool {
		return func(e *pipeline.Event) bool { return regexp.MustCompile(re).Match(e.Raw) }
	}
	fixtures := map[string]want{
		"metadata-node-lease-update.json":  {rc, md, true, raw(`"stageTimestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"`)},
		"request-received-pod-create.json": {rr, rqrs, false, func(e *pipeline.Event) bool { return e.Decision() == "" && e.ResponseStatus == nil }},
		"requestresponse-pod-create.json":  {rc, rqrs, true, func(e *pipeline.Event) bool { return e.RequestObject != nil && e.ResponseObject != nil }},
		"request-pod-status-patch.json":    {rc, rq, true, body(`"$setElementOrder/conditions"`)},
		"watch-response-started.json":      {rs, md, true, func(e *pipeline.Event) bool { return e.Verb == "watch" && e.ObjectRef.Name == "api-config" }},
		"watch-response-complete.json":     {rc, md, true, func(e *pipeline.Event) bool { return e.Verb == "watch" }}, // judged unless its ResponseStarted came first
		"exec-response-started.json":       {rs, md, true, func(e *pipeline.Event) bool { return e.Code() == 101 && e.ObjectRef.Subresource == "exec" }},
		"panic.json":                       {auditv1.StagePanic, md, true, func(e *pipeline.Event) bool { return e.Code() == 500 }},
		"failed-authentication-401.json": {rs, md, true, func(e *pipeline.Event) bool {
			return e.IsFailedAuthentication() && e.ResponseStatus.Message == "Authentication failed, no credentials provided"
		}},
		"anonymous-healthz-load-balancer.json": {rc, md, true, func(e *pipeline.Event) bool { return anon(e) && e.RequestURI == "/healthz" && e.ObjectRef == nil }},
		"anonymous-secrets-list-allowed.json": {rc, md, true, func(e *pipeline.Event) bool {
			return anon(e) && e.Decision() == "allow" && e.ObjectRef.Resource == "secrets"
		}},
		"anonymous-probe-forbidden.json":      {rc, md, true, func(e *pipeline.Event) bool { return anon(e) && e.Decision() == "forbid" && e.Code() == 403 }},
		"anonymous-probe-forbidden-path.json": {rc, md, true, func(e *pipeline.Event) bool { return anon(e) && e.Decision() == "forbid" && e.ObjectRef == nil }},
		"list-pods-field-selector.json": {rc, md, true, func(e *pipeline.Event) bool {
			return strings.Contains(e.RequestURI, "fieldSelector=spec.nodeName%3Dnode-1")
		}},
		"list-secrets-label-selector-operator.json": {rc, md, true, func(e *pipeline.Event) bool { return strings.Contains(e.RequestURI, "labelSelector=") && bound(e) }},
		"bound-service-account-token.json":          {rc, md, true, bound},
		"token-replay-curl.json":                    {rc, md, true, func(e *pipeline.Event) bool { return bound(e) && strings.HasPrefix(e.UserAgent, "curl/") }},
		"stale-token.json":                          {rc, md, true, ann("authentication.k8s.io/stale-token")},
		"legacy-token.json":                         {rc, rq, true, ann("authentication.k8s.io/legacy-token")},
		"legacy-token-invalidated.json": {rs, md, true, func(e *pipeline.Event) bool {
			return e.IsFailedAuthentication() && ann("authentication.k8s.io/legacy-token-invalidated")(e)
		}},
		"token-request-kubelet.json":         {rc, rq, true, body(`"expirationSeconds":3607,"boundObjectRef":{"kind":"Pod"`)},
		"token-request-requestresponse.json": {rc, rqrs, true, func(e *pipeline.Event) bool { return bytes.Contains(e.ResponseObject.Raw, []byte(`"token":"eyJ`)) }},
		"tokenreview-unsigned-jwt.json":      {rc, rq, true, body(`"token":"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.`)},
		"broad-selector-watch-secrets.json":  {rs, md, true, func(e *pipeline.Event) bool { return e.Verb == "watch" && !strings.Contains(e.RequestURI, "Selector") }},
		"apparmor-unconfined-pod.json":       {rc, rqrs, true, body(`"appArmorProfile":{"type":"Unconfined"}`)},
		"unsecured-image-pull-pod.json":      {rc, rqrs, true, body(`"imagePullPolicy":"IfNotPresent"`)},
		"admission-policy-delete.json": {rc, rqrs, true, func(e *pipeline.Event) bool {
			return e.Verb == "delete" && e.ObjectRef.Resource == "validatingadmissionpolicies"
		}},
		"timestamp-no-fraction.json": {rc, md, true, raw(`"stageTimestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"`)},
		"timestamp-nanoseconds.json": {rc, md, true, raw(`"stageTimestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"`)},
	}
	files, err := filepath.Glob(filepath.Join(testdataDir, "events", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			w, ok := fixtures[name]
			if !ok {
				t.Fatalf("fixture %s has no expectation in this test", name)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var e pipeline.Event
			if err := auditjson.Decode(&e, "prod-eu1", data); err != nil {
				t.Fatalf("decoding: %v", err)
			}
			if e.Stage != w.stage || e.Level != w.level || e.IsAuthoritative() != w.authoritative {
				t.Errorf("stage %s level %s authoritative %v; want %s %s %v", e.Stage, e.Level, e.IsAuthoritative(), w.stage, w.level, w.authoritative)
			}
			if !w.check(&e) {
				t.Errorf("fixture does not show what its name says")
			}
		})
	}
	for name := range fixtures {
		if _, err := os.Stat(filepath.Join(testdataDir, "events", name)); err != nil {
			t.Errorf("expected fixture missing: %v", err)
		}
	}
}

// TestFixtureEventLists checks the webhook bodies: good ones decode with
// every item, bad ones fail permanently for the stated reason.
func TestFixtureEventLists(t *testing.T) {
	lists := map[string]struct {
		items   int
		errLike string // substring of the error, "" for success
		item    int    // index in an *ItemError, -1 for none
	}{
		"webhook-batch.json":             {items: 8, item: -1},
		"webhook-single.json":            {items: 1, item: -1},
		"empty.json":                     {items: 0, item: -1},
		"v1beta1.json":                   {items: 1, item: -1},
		"bad-kind.json":                  {errLike: `unexpected kind "PolicyList"`, item: -1},
		"bad-malformed-item.json":        {errLike: "parsing timestamp", item: 1},
		"bad-item-wrong-apiversion.json": {errLike: `unsupported apiVersion "audit.k8s.io/v2"`, item: 1},
		"bad-not-json.txt":               {errLike: auditjson.ErrNotJSON.Error(), item: -1},
		"bad-truncated.json":             {errLike: "unexpected end of JSON input", item: -1},
	}
	files, _ := filepath.Glob(filepath.Join(testdataDir, "eventlists", "*"))
	if len(files) != len(lists) {
		t.Errorf("%d files in testdata/eventlists, %d expectations: keep them in step", len(files), len(lists))
	}
	for name, w := range lists {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(testdataDir, "eventlists", name))
			if err != nil {
				t.Fatal(err)
			}
			evs, err := auditjson.DecodeEvents(data)
			if w.errLike == "" {
				if err != nil {
					t.Fatalf("decoding: %v", err)
				}
				if len(evs) != w.items {
					t.Fatalf("%d events, want %d", len(evs), w.items)
				}
				items, err := auditjson.SplitEventList(data)
				if err != nil {
					t.Fatal(err)
				}
				for i, it := range items {
					if bytes.Contains(it, []byte(`"kind":"Event"`)) {
						t.Errorf("item %d has kind: webhook items omit it", i)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("decoded %d events; want an error containing %q", len(evs), w.errLike)
			}
			if !strings.Contains(err.Error(), w.errLike) || !pipeline.IsPermanent(err) {
				t.Errorf("error %q (permanent %v); want a permanent error containing %q", err, pipeline.IsPermanent(err), w.errLike)
			}
			var ie *auditjson.ItemError
			if got := errors.As(err, &ie); got != (w.item >= 0) || got && ie.Index != w.item {
				t.Errorf("error %v: want an ItemError for item %d", err, w.item)
			}
		})
	}
}

// TestFixturesDocumented keeps testdata/README.md listing every fixture.
func TestFixturesDocumented(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(testdataDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, dir := range []string{"events", "eventlists", "demo"} {
		files, _ := filepath.Glob(filepath.Join(testdataDir, dir, "*"))
		for _, f := range files {
			if !bytes.Contains(readme, []byte("`"+filepath.Base(f)+"`")) {
				missing = append(missing, dir+"/"+filepath.Base(f))
			}
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("testdata/README.md does not list %v", missing)
	}
}
