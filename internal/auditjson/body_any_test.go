package auditjson

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// stdBody is what decodedBody.get returned before decodeBody: json.Unmarshal
// into an any, nil when it fails.
func stdBody(data []byte) (any, bool) {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, false
	}
	return v, true
}

var bodyCases = []string{
	`{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `1e400`, `-1e400`, `1.5e-400`, `12345678901234567890`, `0.1`, `-1.25E+3`,
	` {"a" : [1, "x", null, true, {"b": []}] } `, `{"a":1,"a":2}`, `{"a":{"b":1},"a":"c"}`,
	`"\u00e9\ud83d\ude00\ud800\udc00\ud800 \\ \/ \b\f\n\r\t"`, "\"\xff\xfe bad utf8 \xe2\x82\"", "{\"\xff\":1}",
	`{"a":1}x`, `{"a":1,}`, `[1,]`, `[1 2]`, `{"a" 1}`, `{a:1}`, `01`, `1.`, `.5`, `-`, `+1`, `1e`, `tru`, `nul`, `nulll`,
	`"abc`, "\"a\x01\"", `"\x"`, `"\u12"`, ``, ` `, `[`, `{`, `{"a":`, `[[[[]]]]`, "\t\r\n[\n1\n]\n",
	// fieldsV1 objects are cached by their bytes (bodyDecoder.fieldsV1).
	`{"fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:app":{}}}}}`, `{"fieldsV1":{"x":1e400}}`, `{"fieldsV1":{"x":1}x`,
	`{"fieldsV1":{"fieldsV1":{"a":[1,{"fieldsV1":{}}]}},"fieldsV1":{"b":2}}`, `{"fieldsV1":[1]}`, `{"fieldsV1":"x"}`,
	// So are the members workloads repeat (workloadKeys), objects or arrays.
	`{"spec":{"containers":[{"name":"api","image":"r.example/api:1.2"}],"volumes":[]}}`, `{"containers":[1,]}`,
	`{"labels":{"app":"api","app":"web"},"labels":{}}`, `{"containers":{"containers":[{"containers":1e400}]}}`,
	`{"affinity":"x","tolerations":null,"securityContext":{"runAsUser":1000}}`, `{"volumes":[{"name":"v"}]x`,
}

// TestDecodeBodyMatchesEncodingJSON: decodeBody yields what json.Unmarshal
// into an any does, and fails where it fails: edge cases, encoding/json's
// 10,000-level nesting limit, and every body of a generated stream.
func TestDecodeBodyMatchesEncodingJSON(t *testing.T) {
	check := func(name string, data []byte) {
		t.Helper()
		want, wantOK := stdBody(data)
		got, ok := decodeBody(data)
		if ok != wantOK || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: decodeBody = %#v, %v; json.Unmarshal = %#v, %v", name, got, ok, want, wantOK)
		}
	}
	for _, c := range bodyCases {
		for range 3 { // see FuzzDecodeBody
			check(c, []byte(c))
		}
	}
	for _, n := range []int{9999, 10000, 10001} {
		check("depth", []byte(strings.Repeat("[", n)+strings.Repeat("]", n)))
		check("depth", []byte(strings.Repeat(`{"a":`, n)+"1"+strings.Repeat("}", n)))
	}
	g := gen.New(gen.Config{Seed: 4, AttackRatio: 0.3})
	bodies := 0
	for range 12000 {
		var ev pipeline.Event
		if err := Decode(&ev, "prod", g.Next().JSON); err != nil {
			t.Fatal(err)
		}
		for _, u := range []*[]byte{rawOf(ev.RequestObject), rawOf(ev.ResponseObject)} {
			if u != nil {
				check(string(ev.AuditID), *u)
				bodies++
			}
		}
	}
	if bodies < 1000 {
		t.Fatalf("only %d bodies", bodies)
	}
}

func FuzzDecodeBody(f *testing.F) {
	for _, c := range bodyCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wantOK := stdBody(data)
		// Three times: the subtree caches store a value on its
		// second miss and serve it on the third decode.
		for range 3 {
			got, ok := decodeBody(data)
			if ok != wantOK || !reflect.DeepEqual(got, want) {
				t.Fatalf("decodeBody(%q) = %#v, %v; json.Unmarshal = %#v, %v", data, got, ok, want, wantOK)
			}
		}
	})
}

func rawOf(u *runtime.Unknown) *[]byte {
	if u == nil || len(u.Raw) == 0 {
		return nil
	}
	return &u.Raw
}

// BenchmarkDecodeBody decodes the request and response bodies of a
// finding-heavy generated stream (pods, workloads, token reviews), the
// bodies detectors and rules read.
func BenchmarkDecodeBody(b *testing.B) {
	benchBodies(b, 1, 2000, func(*pipeline.Event) bool { return true })
}

// BenchmarkDecodeBodyPods decodes the pods' request and response bodies of
// the realistic generated stream: pods created by their workloads, the
// bodies the pod-spec view and the pack's pod rules read.
func BenchmarkDecodeBodyPods(b *testing.B) {
	benchBodies(b, 0.02, 1000, func(ev *pipeline.Event) bool {
		return ev.ObjectRef != nil && ev.ObjectRef.Resource == "pods" && ev.ObjectRef.Subresource == "" && ev.Verb == "create"
	})
}

// benchBodies decodes n bodies of the events of a generated stream (with
// the given share of attacks) that keep accepts, over and over.
func benchBodies(b *testing.B, attackRatio float64, n int, keep func(*pipeline.Event) bool) {
	g := gen.New(gen.Config{Seed: 7, AttackRatio: attackRatio})
	var bodies [][]byte
	size := 0
	for len(bodies) < n {
		var ev pipeline.Event
		if err := Decode(&ev, "prod", g.Next().JSON); err != nil {
			b.Fatal(err)
		}
		if !keep(&ev) {
			continue
		}
		for _, u := range []*[]byte{rawOf(ev.RequestObject), rawOf(ev.ResponseObject)} {
			if u != nil {
				bodies = append(bodies, *u)
				size += len(*u)
			}
		}
	}
	b.SetBytes(int64(size / len(bodies)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, ok := decodeBody(bodies[i%len(bodies)]); !ok {
			b.Fatal("body did not decode")
		}
	}
}

// TestDecodeBodySharesEmptyObjects: every {} is the one shared empty map,
// so a stored object's managedFields cost no map per leaf; a non-empty
// object is its own.
func TestDecodeBodySharesEmptyObjects(t *testing.T) {
	body := []byte(`{"metadata":{"managedFields":[{"fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:app":{}}}}}]},"spec":{}}`)
	v, ok := decodeBody(body)
	if !ok {
		t.Fatal("body did not decode")
	}
	fields := v.(map[string]any)["metadata"].(map[string]any)["managedFields"].([]any)[0].(map[string]any)["fieldsV1"].(map[string]any)
	labels := fields["f:metadata"].(map[string]any)["f:labels"].(map[string]any)
	spec := v.(map[string]any)["spec"].(map[string]any)
	ptr := func(x any) uintptr { return reflect.ValueOf(x).Pointer() }
	if ptr(labels["."]) != ptr(labels["f:app"]) || ptr(labels["."]) != ptr(spec) || len(spec) != 0 {
		t.Error("empty objects are not one shared map")
	}
	if ptr(labels) == ptr(fields) {
		t.Error("non-empty objects share a map")
	}
	if std, _ := stdBody(body); !reflect.DeepEqual(v, std) {
		t.Errorf("decoded %v, encoding/json %v", v, std)
	}
	// 6 non-empty objects (a map and its group each), the array and its
	// element: 14, where each of the 3 empty objects added one more.
	if n := testing.AllocsPerRun(100, func() { decodeBody(body) }); n > 14 {
		t.Errorf("%v allocations, want at most 14", n)
	}
}

// TestDecodeBodyFieldsV1Cache: a repeated fieldsV1 object is decoded once
// and shared from its third sighting; one byte more is another object; a
// cached object is refused where its depth in the body would take it past
// encoding/json's limit, as when it is decoded.
func TestDecodeBodyFieldsV1Cache(t *testing.T) {
	const fv = `{"f:metadata":{"f:ownerReferences":{".":{},"k:{\"uid\":\"6c1f0e3a-77b1-4bde-9a2d-1b0e4d7f2c11\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"api\"}":{".":{},"f:image":{},"f:name":{}}}}}`
	body := func(fields string) []byte {
		return []byte(`{"kind":"Pod","metadata":{"name":"api-0","managedFields":[{"manager":"kube-controller-manager","fieldsType":"FieldsV1","fieldsV1":` + fields + `}]}}`)
	}
	fieldsOf := func(v any) map[string]any {
		return v.(map[string]any)["metadata"].(map[string]any)["managedFields"].([]any)[0].(map[string]any)["fieldsV1"].(map[string]any)
	}
	ptr := func(m map[string]any) uintptr { return reflect.ValueOf(m).Pointer() }
	var got []map[string]any
	for range 3 {
		v, ok := decodeBody(body(fv))
		want, _ := stdBody(body(fv))
		if !ok || !reflect.DeepEqual(v, want) {
			t.Fatalf("decoded %v, encoding/json %v", v, want)
		}
		got = append(got, fieldsOf(v))
	}
	if ptr(got[0]) == ptr(got[1]) || ptr(got[1]) != ptr(got[2]) {
		t.Error("fieldsV1 not stored on its second miss and shared on its third decode")
	}
	other := fv[:len(fv)-2] + `,"f:x":{}}}`
	v, ok := decodeBody(body(other))
	if want, _ := stdBody(body(other)); !ok || !reflect.DeepEqual(v, want) || ptr(fieldsOf(v)) == ptr(got[2]) {
		t.Errorf("an object one member longer: decoded %v, encoding/json %v", v, want)
	}
	// The cached object nests 4 levels; around the limit its depth in
	// the body decides, hit or not.
	for n := 9994; n <= 9998; n++ {
		deep := []byte(strings.Repeat(`{"a":`, n) + `{"fieldsV1":` + fv + `}` + strings.Repeat("}", n))
		want, wantOK := stdBody(deep)
		if got, ok := decodeBody(deep); ok != wantOK || (ok && !reflect.DeepEqual(got, want)) {
			t.Errorf("nested %d deep: decoded ok %v, encoding/json ok %v", n, ok, wantOK)
		}
	}
}

// TestDecodeBodyWorkloadCache: a pod's containers, as the pods of one
// ReplicaSet repeat them, are decoded once and shared from their third
// sighting, equal to what encoding/json decodes each time; a container
// list one byte different is another value.
func TestDecodeBodyWorkloadCache(t *testing.T) {
	const containers = `[{"name":"api","image":"registry.example/team/api:1.4.2","ports":[{"containerPort":8080,"protocol":"TCP"}],"resources":{"limits":{"cpu":"500m"}}}]`
	body := func(name, containers string) []byte {
		return []byte(`{"kind":"Pod","metadata":{"name":"` + name + `"},"spec":{"containers":` + containers + `}}`)
	}
	containersOf := func(v any) []any {
		return v.(map[string]any)["spec"].(map[string]any)["containers"].([]any)
	}
	ptr := func(s []any) *any { return &s[0] }
	var got [][]any
	for i := range 3 {
		data := body(fmt.Sprintf("api-%d", i), containers)
		v, ok := decodeBody(data)
		want, _ := stdBody(data)
		if !ok || !reflect.DeepEqual(v, want) {
			t.Fatalf("decoded %v, encoding/json %v", v, want)
		}
		got = append(got, containersOf(v))
	}
	// The containers' ports and resources go through the same
	// direct-mapped cache on each miss; a slot they share with the
	// containers (the seed is random per process) keeps the containers
	// from ever being stored.
	inner := []string{`[{"containerPort":8080,"protocol":"TCP"}]`, `{"limits":{"cpu":"500m"}}`}
	if s := subtreeSlot(containers); s == subtreeSlot(inner[0]) || s == subtreeSlot(inner[1]) {
		t.Logf("the containers share their slot with their ports or resources this run: not checked for sharing")
	} else if ptr(got[0]) == ptr(got[1]) || ptr(got[1]) != ptr(got[2]) {
		t.Error("containers not stored on their second miss and shared on their third decode")
	}
	other := strings.Replace(containers, "1.4.2", "1.4.3", 1)
	v, ok := decodeBody(body("api-3", other))
	if want, _ := stdBody(body("api-3", other)); !ok || !reflect.DeepEqual(v, want) || ptr(containersOf(v)) == ptr(got[2]) {
		t.Errorf("other containers: decoded %v, encoding/json %v", v, want)
	}
}

// TestDecodeBodyProjectedCache: the service-account token volume's
// projected source, the same in every pod, is shared from its third
// sighting although the volume around it, named kube-api-access-<random>,
// is different in each pod and never cached.
func TestDecodeBodyProjectedCache(t *testing.T) {
	const projected = `{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},{"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}}],"defaultMode":420}`
	var got []map[string]any
	for _, suffix := range []string{"x7k2p", "q9d4m", "b3n8w"} {
		data := []byte(`{"kind":"Pod","spec":{"volumes":[{"name":"kube-api-access-` + suffix + `","projected":` + projected + `}]}}`)
		v, ok := decodeBody(data)
		want, _ := stdBody(data)
		if !ok || !reflect.DeepEqual(v, want) {
			t.Fatalf("decoded %v, encoding/json %v", v, want)
		}
		vol := v.(map[string]any)["spec"].(map[string]any)["volumes"].([]any)[0].(map[string]any)
		got = append(got, vol["projected"].(map[string]any))
	}
	for _, suffix := range []string{"x7k2p", "q9d4m", "b3n8w"} {
		volumes := `[{"name":"kube-api-access-` + suffix + `","projected":` + projected + `}]`
		if subtreeSlot(volumes) == subtreeSlot(projected) {
			t.Skipf("the projected source shares its slot with the volumes this run (seed is random): never stored")
		}
	}
	same := func(a, b map[string]any) bool { return reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer() }
	if same(got[0], got[1]) || !same(got[1], got[2]) {
		t.Error("projected source not stored on its second miss and shared on its third decode")
	}
}

// TestDecodeBodyContainerPartsCache: a container's probes, resources,
// ports and env repeat in every pod of its workload, while the container
// itself does not (its volumeMounts name the pod's own token volume): the
// parts are shared from the third pod on, and every pod decodes as
// encoding/json has it.
func TestDecodeBodyContainerPartsCache(t *testing.T) {
	// Values no other test decodes: the caches are shared by the package.
	parts := [][2]string{
		{"ports", `[{"name":"parts-test","containerPort":18471,"protocol":"TCP"}]`},
		{"env", `[{"name":"PARTS_TEST","value":"18471"}]`},
		{"resources", `{"limits":{"memory":"18471Mi"},"requests":{"cpu":"18471m"}}`},
		{"livenessProbe", `{"httpGet":{"path":"/parts-test/healthz","port":"http"},"periodSeconds":10}`},
		{"readinessProbe", `{"httpGet":{"path":"/parts-test/ready","port":"http"}}`},
		{"startupProbe", `{"exec":{"command":["parts-test"]}}`},
	}
	const status = `{"phase":"Pending","qosClass":"PartsTest"}`
	var members []string
	cachedRaws := []string{status} // every value the body sends through workloadCache
	for _, p := range parts {
		members = append(members, `"`+p[0]+`":`+p[1])
		cachedRaws = append(cachedRaws, p[1])
	}
	var got, pods []map[string]any
	for _, suffix := range []string{"x7k2p", "q9d4m", "b3n8w"} {
		containers := `[{"name":"api","image":"shop/api:1.4",` + strings.Join(members, ",") + `,"volumeMounts":[{"name":"kube-api-access-` + suffix + `","mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}]}]`
		cachedRaws = append(cachedRaws, containers)
		data := []byte(`{"kind":"Pod","spec":{"containers":` + containers + `},"status":` + status + `}`)
		v, ok := decodeBody(data)
		want, _ := stdBody(data)
		if !ok || !reflect.DeepEqual(v, want) {
			t.Fatalf("decoded %v, encoding/json %v", v, want)
		}
		got = append(got, v.(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any))
		pods = append(pods, v.(map[string]any))
	}
	ptr := func(x any) uintptr { return reflect.ValueOf(x).Pointer() }
	shared := func(what, raw string, a, b, c any) {
		t.Helper()
		// The cache is direct-mapped, its seed random per process: a
		// value whose slot another value of the same body takes turns
		// with is never stored (each resets the other's miss), so it is
		// only checked to decode right.
		for _, other := range cachedRaws {
			if other != raw && subtreeSlot(other) == subtreeSlot(raw) {
				t.Logf("%s shares its slot with %.40s this run: not checked for sharing", what, other)
				return
			}
		}
		if ptr(a) == ptr(b) || ptr(b) != ptr(c) {
			t.Errorf("%s not stored on its second miss and shared on its third decode", what)
		}
	}
	for _, p := range parts {
		shared(p[0], p[1], got[0][p[0]], got[1][p[0]], got[2][p[0]])
	}
	shared("status", status, pods[0]["status"], pods[1]["status"], pods[2]["status"])
	if ptr(got[1]) == ptr(got[2]) {
		t.Error("containers naming different volumes are shared")
	}
}

// subtreeSlot is the slot of a subtreeCache that raw hashes to.
func subtreeSlot(raw string) uint64 {
	return maphash.Bytes(cacheSeed, []byte(raw)) >> (64 - subtreeCacheBits)
}
