package auditjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/gen"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// sentinelEvent is what ev holds before each decode, so that a decoder that
// writes ev on failure, or leaves stale fields on success, is caught.
func sentinelEvent() auditv1.Event {
	return auditv1.Event{
		Verb:           "sentinel",
		Annotations:    map[string]string{"sentinel": "1"},
		ObjectRef:      &auditv1.ObjectReference{Name: "sentinel"},
		ResponseStatus: &metav1.Status{Code: 599},
	}
}

// equivalent decodes data with DecodeEvent and with the encoding/json
// reference and returns a description of any difference: in the
// accept/reject decision, the error's classification, or the result.
func equivalent(data []byte) string {
	got, want := sentinelEvent(), sentinelEvent()
	gerr := DecodeEvent(data, &got)
	werr := decodeEventStd(data, &want)
	switch {
	case gerr == nil && werr != nil:
		return fmt.Sprintf("accepted, reference refused: %v", werr)
	case gerr != nil && werr == nil:
		return fmt.Sprintf("refused (%v), reference accepted", gerr)
	case gerr != nil:
		if !pipeline.IsPermanent(gerr) {
			return fmt.Sprintf("error not permanent: %v", gerr)
		}
		if !strings.HasPrefix(gerr.Error(), "decoding event: ") {
			return fmt.Sprintf("error %q lacks its context", gerr)
		}
	}
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		return fmt.Sprintf("decoded differently:\n got %s\nwant %s\n got %#v\nwant %#v", gj, wj, got, want)
	}
	// Twice again: the second decode caches the event's maps
	// (decode_mapcache.go), the third hits them, and must decide and
	// decode exactly as the first decode did.
	for range 2 {
		again := sentinelEvent()
		if aerr := DecodeEvent(data, &again); (aerr == nil) != (gerr == nil) {
			return fmt.Sprintf("decoded again: err %v, first %v", aerr, gerr)
		}
		if !reflect.DeepEqual(again, want) {
			return fmt.Sprintf("decoded again differently:\n got %#v\nwant %#v", again, want)
		}
	}
	return reusedEquivalent(data, got, gerr)
}

// reusedEquivalent holds Decode to DecodeEvent's result (got, gerr) when
// it decodes data into a new Event and into one that holds another
// decoded event, whose objectRef, responseStatus and bodies it fills
// again in place (pipeline.Event.Slots): the same event, or when data
// does not decode, the earlier one intact.
func reusedEquivalent(data []byte, got auditv1.Event, gerr error) string {
	var prev auditv1.Event
	if err := DecodeEvent([]byte(testEventJSON), &prev); err != nil {
		return fmt.Sprintf("decoding testEventJSON: %v", err)
	}
	var fresh, reused pipeline.Event
	if err := Decode(&reused, "c", []byte(testEventJSON)); err != nil {
		return fmt.Sprintf("decoding testEventJSON: %v", err)
	}
	for _, c := range []struct {
		name string
		ev   *pipeline.Event
		was  auditv1.Event
	}{{"new", &fresh, auditv1.Event{}}, {"reused", &reused, prev}} {
		err := Decode(c.ev, "c", data)
		if (err == nil) != (gerr == nil) {
			return fmt.Sprintf("Decode into a %s Event: err %v, DecodeEvent's %v", c.name, err, gerr)
		}
		want := got
		if err != nil {
			want = c.was
		}
		if !reflect.DeepEqual(c.ev.Event, want) {
			return fmt.Sprintf("Decode into a %s Event (err %v):\n got %#v\nwant %#v", c.name, err, c.ev.Event, want)
		}
	}
	return ""
}

func TestDecodeEquivalenceGenerated(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	// A high attack ratio so that every scenario's events, including the
	// rare shapes (impersonation, token requests, pod bodies), occur often.
	g := gen.New(gen.Config{Seed: 11, AttackRatio: 0.2})
	for i := range n {
		ev := g.Next()
		if d := equivalent(ev.JSON); d != "" {
			t.Fatalf("event %d (%s %s): %s\n%s", i, ev.Scenario, ev.Stage, d, ev.JSON)
		}
		var got auditv1.Event
		if err := DecodeEvent(ev.JSON, &got); err != nil {
			t.Fatalf("event %d: generated event refused: %v", i, err)
		}
	}
}

func TestDecodeEquivalenceTestdata(t *testing.T) {
	files, err := filepath.Glob("../../testdata/events/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no event fixtures: %v", err)
	}
	lists, _ := filepath.Glob("../../testdata/eventlists/*")
	for _, f := range append(files, lists...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if d := equivalent(data); d != "" {
			t.Errorf("%s: %s", f, d)
		}
		// The webhook's lists, item by item, as ingest and detect see them.
		items, err := SplitEventList(data)
		if err != nil {
			continue
		}
		for i, item := range items {
			if d := equivalent(item); d != "" {
				t.Errorf("%s item %d: %s", f, i, d)
			}
		}
	}
}

// edgeCases are hand-made inputs for the corners of encoding/json's
// behaviour that audit events rarely exercise; they also seed the fuzzer.
var edgeCases = []string{
	// Escapes, Unicode and invalid UTF-8.
	`{"verb":"g\u0065t","user":{"username":"a\"b\\c\/d\b\f\n\r\t"}}`,
	`{"requestURI":"/api/v1/namespaces/ns/pods/ünïcödé-😀","userAgent":"\ud83d\ude00 \u00e9"}`,
	`{"userAgent":"\ud83d"}`,
	`{"userAgent":"\ud83dx"}`,
	`{"userAgent":"\ude00\ud83d"}`,
	`{"userAgent":"\ud83d\u0041"}`,
	`{"userAgent":"\ud83d\ud83d\ude00"}`,
	`{"userAgent":"\u0000\u001f\uFFFF"}`,
	"{\"userAgent\":\"a\xffb\xc3\"}",
	"{\"annotations\":{\"k\xff\":\"v\xfe\"}}",
	"{\"requestObject\":{\"a\":\"\xff\"}}",
	"{\"verb\":\"a\x01\"}",
	"{\"verb\":\"\x7f\"}",
	`{"\u0076erb":"get","user":{"user\u006eame":"x"}}`,
	`{"annotations":{"a\nb":"c","\u00e9":"\ud800"}}`,
	// Member names matched case-insensitively, as encoding/json does;
	// the long s and the Kelvin sign fold to s and k.
	`{"VERB":"get","User":{"UserName":"x","GROUPS":["g"]},"ſtage":"ResponseComplete","KIND":"Event"}`,
	"{\"\u212aind\":\"Event\",\"objectref\":{\"RESOURCE\":\"pods\"}}",
	`{"verb":"a","Verb":"b"}`,
	`{"Verb":"b","verb":"a"}`,
	// Unknown members of every shape, at every level.
	`{"future":[1,[2,{"a":[null,true,false,-1.5e+3,0,-0,1E-2]}],"x"],"user":{"new":{"a":[]}},"objectRef":{"x":[[]]},"responseStatus":{"metadata":{"y":{}},"details":{"z":1,"causes":[{"w":[]}]}}}`,
	`{"verb":"get","newField":[1,2],"nested":{"deeper":{"deepest":[{"a":null}]}}}`,
	// null for every field.
	`{"kind":null,"apiVersion":null,"level":null,"auditID":null,"stage":null,"requestURI":null,"verb":null,"user":null,"impersonatedUser":null,"authenticationMetadata":null,"sourceIPs":null,"userAgent":null,"objectRef":null,"responseStatus":null,"requestObject":null,"responseObject":null,"requestReceivedTimestamp":null,"stageTimestamp":null,"annotations":null}`,
	`{"user":{"username":null,"uid":null,"groups":null,"extra":null},"objectRef":{"resource":null},"responseStatus":{"code":null,"metadata":null,"details":null}}`,
	`{"user":{"groups":[null,"a",null],"extra":{"k":null,"j":[null]}},"annotations":{"a":null},"sourceIPs":[null]}`,
	`{"verb":"get","verb":null,"responseStatus":{"code":201},"responseStatus":{"code":null}}`,
	`{"stageTimestamp":"2026-11-27T09:15:01Z","stageTimestamp":null}`,
	// Empty objects and arrays.
	`{}`,
	`{"user":{},"objectRef":{},"annotations":{},"sourceIPs":[],"responseStatus":{},"impersonatedUser":{},"authenticationMetadata":{}}`,
	`{"user":{"groups":[],"extra":{}},"responseStatus":{"metadata":{},"details":{"causes":[]}}}`,
	`{"user":{"extra":{"k":[]}}}`,
	// Duplicate members: the last wins for scalars, structs merge, maps
	// gain keys, slices are overwritten in place.
	`{"verb":"get","verb":"list"}`,
	`{"objectRef":{"resource":"pods"},"objectRef":{"name":"x"}}`,
	`{"objectRef":{"resource":"pods"},"objectRef":null,"objectRef":{"name":"x"}}`,
	`{"responseStatus":{"code":403,"reason":"Forbidden"},"responseStatus":null,"responseStatus":{"status":"Failure"}}`,
	`{"user":{"groups":["a","b","c"]},"user":{"groups":["x"]},"user":{"groups":["y",null,null,null]}}`,
	`{"user":{"groups":["a","b"]},"user":{"groups":[null]}}`,
	`{"user":{"groups":["a","b"]},"user":{"groups":[]}}`,
	`{"sourceIPs":["1.1.1.1","2.2.2.2"],"sourceIPs":["3.3.3.3"]}`,
	`{"annotations":{"a":"1","a":"2"},"annotations":{"b":"2"}}`,
	`{"annotations":{"a":"1"},"annotations":{"a":"1"},"user":{"extra":{"k":["v"]},"extra":{"k":["v"]}}}`,
	`{"annotations":{"a":"}"},"user":{"extra":{"k}":["}"]}}}`,
	`{"annotations": { "a" : "b" } ,"user":{"extra":{ "k":[ "v" ] }}}`,
	`{"annotations":{"a":"b"}x}`, `{"annotations":{"a":"b"}`, `{"annotations":{"a":"b"`,
	`{"user":{"extra":{"k":["v"]}x}}`, `{"user":{"extra":{"k":["v"]}`,
	`{"annotations":{"a":"1","b":"2","c":"3","d":"4","e":"5","f":"6","g":"7","h":"8","i":"9","j":"10","a":"11"}}`,
	`{"user":{"extra":{"a":["1"],"b":["2"],"c":["3"],"d":["4"],"e":["5"],"f":["6"],"g":["7"],"h":["8"],"i":["9"]}}}`,
	`{"user":{"extra":{"k":["v"]}},"user":{"extra":{"k":null,"j":["w"]}}}`,
	`{"user":{"username":"a"},"user":null,"user":{"uid":"u"}}`,
	`{"impersonatedUser":{"username":"a"},"impersonatedUser":{"uid":"u"}}`,
	`{"responseStatus":{"details":{"causes":[{"reason":"a"},{"field":"g"}]}},"responseStatus":{"details":{"causes":[{"field":"f"},null]}}}`,
	`{"responseStatus":{"details":{"causes":[{"reason":"a"},{"field":"g"}]}},"responseStatus":{"details":{"causes":[{}]}},"responseStatus":{"details":{"causes":[null,null]}}}`,
	`{"responseStatus":{"metadata":{"remainingItemCount":5}},"responseStatus":{"metadata":{"remainingItemCount":null}}}`,
	`{"responseStatus":{"metadata":{"remainingItemCount":-9223372036854775808,"shardInfo":{"selector":"s"},"selfLink":"l","continue":"c","resourceVersion":"1"}}}`,
	`{"requestObject":{"a":1},"requestObject":{"b":2}}`,
	`{"requestObject":{"a":1},"requestObject":null}`,
	`{"requestObject":null,"requestObject":{"a":1}}`,
	// Bodies of every JSON type, with inner whitespace kept.
	`{"requestObject":"string","responseObject":123}`,
	`{"requestObject":[],"responseObject":true}`,
	`{"requestObject" : { "a" : [ 1 , 2 ] } , "responseObject" :	{"b":"\u00e9\""}	}`,
	// Numbers, and strings where the type is a number and back.
	`{"responseStatus":{"code":-0}}`,
	`{"responseStatus":{"code":-2147483648,"details":{"retryAfterSeconds":2147483647}}}`,
	`{"responseStatus":{"code":2147483648}}`,
	`{"responseStatus":{"code":-2147483649}}`,
	`{"responseStatus":{"code":99999999999999999999999}}`,
	`{"responseStatus":{"code":1.0}}`,
	`{"responseStatus":{"code":1e2}}`,
	`{"responseStatus":{"code":"200"}}`,
	`{"responseStatus":{"code":true}}`,
	`{"responseStatus":{"metadata":{"remainingItemCount":9223372036854775808}}}`,
	`{"verb":7}`,
	`{"verb":true}`,
	`{"verb":{}}`,
	`{"verb":[]}`,
	`{"user":{"username":1.5}}`,
	`{"user":"alice"}`,
	`{"user":[]}`,
	`{"sourceIPs":[1]}`,
	`{"sourceIPs":"1.2.3.4"}`,
	`{"annotations":{"a":1}}`,
	`{"annotations":[]}`,
	`{"user":{"extra":{"k":"v"}}}`,
	`{"user":{"extra":{"k":[1]}}}`,
	`{"objectRef":"pods"}`,
	`{"responseStatus":{"details":{"causes":[1]}}}`,
	`{"responseStatus":{"details":{"causes":{}}}}`,
	`{"responseStatus":{"metadata":[]}}`,
	`{"impersonatedUser":1}`,
	`{"authenticationMetadata":{"impersonationConstraint":1}}`,
	// Timestamps: tolerant precision, strict shape.
	`{"stageTimestamp":"2026-11-27T09:15:01Z","requestReceivedTimestamp":"2026-11-27T09:15:01.123456789Z"}`,
	`{"stageTimestamp":"2026-11-27T10:15:01.5+01:00","requestReceivedTimestamp":"2026-11-27T08:45:01.5-00:30"}`,
	`{"stageTimestamp":"2026-11-27T09:15:01.1234567891Z"}`,
	`{"stageTimestamp":"2024-02-29T00:00:00Z"}`,
	`{"stageTimestamp":"2026-02-29T00:00:00Z"}`,
	`{"stageTimestamp":"2026-11-27T24:00:00Z"}`,
	`{"stageTimestamp":"2026-11-27T09:15:60Z"}`,
	`{"stageTimestamp":"2026-11-27T09:15:01+24:00"}`,
	`{"stageTimestamp":"2026-11-27T09:15:01+23:59"}`,
	`{"stageTimestamp":"2026-11-27t09:15:01z"}`,
	`{"stageTimestamp":"2026-11-27T09:15:01,5Z"}`,
	`{"stageTimestamp":"2026-11-27T09:15:01.Z"}`,
	`{"stageTimestamp":"2026-11-27T9:15:01Z"}`,
	`{"stageTimestamp":"2026-11-27T09:15:01"}`,
	`{"stageTimestamp":"0000-01-01T00:00:00Z"}`,
	`{"stageTimestamp":"9999-12-31T23:59:59.999999999-23:59"}`,
	`{"stageTimestamp":"+2026-11-27T09:15:01Z"}`,
	`{"stageTimestamp":"\u0032026-11-27T09:15:01Z"}`,
	`{"stageTimestamp":""}`,
	`{"stageTimestamp":123}`,
	`{"stageTimestamp":{}}`,
	`{"stageTimestamp":"27/11/2026 09:15"}`,
	// A space for the T, as log shippers write it: read by both (the
	// reference departs from encoding/json here on purpose; see flexTime).
	`{"stageTimestamp":"2026-11-27 09:15:01Z","requestReceivedTimestamp":"2026-11-27 09:15:01.123456+01:00"}`,
	`{"stageTimestamp":"2026-11-27 09:15:01.5"}`,
	`{"stageTimestamp":"2026-11-27  09:15:01Z"}`,
	`{"stageTimestamp":"2026-11-27 9:15:01Z"}`,
	// kind and apiVersion.
	`{"kind":"Event","apiVersion":"audit.k8s.io/v1"}`,
	`{"kind":"Pod"}`,
	`{"apiVersion":"v1"}`,
	`{"kind":"EventList","apiVersion":"audit.k8s.io/v1"}`,
	`{"kind":1}`,
	// Top level and syntax.
	`null`, " \t\r\nnull\n", `[]`, `"x"`, `1`, `true`, `{} x`, `{}{}`, `{`, ``, ` `,
	`{"verb":"get",}`, `{"verb" "get"}`, `{"verb":"get" "x":1}`, `{,}`, `{"a":01}`,
	`{"a":1.}`, `{"a":-}`, `{"a":1e}`, `{"a":1e+}`, `{"a":.5}`, `{"a":tru}`,
	`{"a":nul}`, `{"a":"\q"}`, `{"a":"\u12"}`, `{"a":"\u12G4"}`, `{"a":"x`,
	`{"a":[1,]}`, `{"a":[1 2]}`, `{"a":{"b"}}`, `{"a":{"b":}}`, `{1:2}`,
	`{"a":"b"]`, `{"verb":"get"`, `{"verb":`, `{"verb"`, `{"verb":nulll}`,
	`{"responseStatus":{"code":12x}}`, `{"requestObject":{"a":[}}`,
}

func TestDecodeEquivalenceEdgeCases(t *testing.T) {
	for _, c := range edgeCases {
		if d := equivalent([]byte(c)); d != "" {
			t.Errorf("%q: %s", c, d)
		}
	}
	// The same events pretty-printed: whitespace everywhere.
	var buf bytes.Buffer
	if err := json.Indent(&buf, []byte(testEventJSON), " ", "\t"); err != nil {
		t.Fatal(err)
	}
	if d := equivalent(buf.Bytes()); d != "" {
		t.Errorf("indented: %s", d)
	}
}

// encoding/json refuses objects and arrays nested deeper than 10,000; so
// must the decoder, without exhausting its stack first.
func TestDecodeNestingLimit(t *testing.T) {
	f := func(depth int, wantOK bool) {
		t.Helper()
		// The event object itself is the first level.
		body := strings.Repeat(`[`, depth-1) + strings.Repeat(`]`, depth-1)
		data := []byte(`{"requestObject":` + body + `}`)
		if d := equivalent(data); d != "" {
			t.Fatalf("depth %d: %s", depth, d)
		}
		var ev auditv1.Event
		if err := DecodeEvent(data, &ev); (err == nil) != wantOK {
			t.Fatalf("depth %d: err %v, want ok=%v", depth, err, wantOK)
		}
	}
	f(10000, true)
	f(10001, false)
}

// FuzzDecodeEquivalence holds DecodeEvent to encoding/json over the wire
// struct: the same accept/reject decision on every input, and the same event
// whenever both accept.
func FuzzDecodeEquivalence(f *testing.F) {
	f.Add([]byte(testEventJSON))
	for _, c := range edgeCases {
		f.Add([]byte(c))
	}
	files, _ := filepath.Glob("../../testdata/events/*.json")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	g := gen.New(gen.Config{Seed: 3, AttackRatio: 0.5})
	for range 50 {
		f.Add(g.Next().JSON)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if d := equivalent(data); d != "" {
			t.Fatalf("%q: %s", data, d)
		}
	})
}

// listEquivalent holds SplitEventList and DecodeEvents to their
// encoding/json references: the same decision, the same items byte for
// byte, the same events, and the same failing item index.
func listEquivalent(data []byte) string {
	got, gerr := SplitEventList(data)
	want, werr := splitEventListStd(data)
	if (gerr == nil) != (werr == nil) {
		return fmt.Sprintf("SplitEventList: err %v, reference err %v", gerr, werr)
	}
	if gerr != nil && !pipeline.IsPermanent(gerr) {
		return fmt.Sprintf("SplitEventList: error not permanent: %v", gerr)
	}
	if len(got) != len(want) || (got == nil) != (want == nil) {
		return fmt.Sprintf("SplitEventList: %d items (nil %v), reference %d (nil %v)", len(got), got == nil, len(want), want == nil)
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			return fmt.Sprintf("SplitEventList: item %d is %q, reference %q", i, got[i], want[i])
		}
	}
	gev, gerr := DecodeEvents(data)
	wev, werr := decodeEventsStd(data)
	if (gerr == nil) != (werr == nil) {
		return fmt.Sprintf("DecodeEvents: err %v, reference err %v", gerr, werr)
	}
	var gi, wi *ItemError
	if errors.As(gerr, &gi) != errors.As(werr, &wi) || (gi != nil && gi.Index != wi.Index) {
		return fmt.Sprintf("DecodeEvents: item error %v, reference %v", gerr, werr)
	}
	if !reflect.DeepEqual(gev, wev) {
		return fmt.Sprintf("DecodeEvents: decoded differently:\n got %#v\nwant %#v", gev, wev)
	}
	return ""
}

var listEdgeCases = []string{
	`{"items":null}`, `{"items":[]}`, `{"items":[null]}`, `{"ITEMS":[{}]}`, `{"Kind":"EventList"}`,
	`{"items":[{}],"items":null}`, `{"items":[{}],"items":[]}`, `{"items":[{"verb":"a"},{}],"items":[{"verb":"b"}]}`,
	`{"kind":"EventList","items":[1,"x",[]]}`, `{"kind":"EventList","items":[{"verb":7}]}`,
	`{"kind":"Event"}`, `{"kind":"Event","verb":"get"}`, `{"kind":"Event","items":[{}]}`, `{"kind":"Event","verb":7}`,
	`{"kind":null,"items":[]}`, `{"kind":7}`, `{"kind":"EventList","kind":"Event"}`,
	"{\"kind\":\"EventList\",\"apiVersion\":\"audit.k8s.io/v1\",\"items\":[{\"verb\":\"get\"}\n,\n{\"verb\":\n\"list\"}]}",
	"{\"items\":[{\"a\":\r\n1, \"b\": [ 1 ,\t2 ]}]}",
	`{"items":[]} x`, `{"items":[],}`, `{"items":[{}]`, `{"metadata":{"resourceVersion":"1"},"items":[]}`,
	`{"items":{}}`, `{"items":"x"}`, `  {"items":[]}  `, "\f{\"items\":[]}\v",
	`{"apiVersion":"audit.k8s.io/v1beta1","items":[]}`, `{"hello":"world"}`, `{}`, `[]`, `null`, ``,
	`{"items":[{"stageTimestamp":"bad"}]}`, `{"items":[{"kind":"Pod"}]}`,
}

func TestSplitEquivalence(t *testing.T) {
	for _, c := range listEdgeCases {
		if d := listEquivalent([]byte(c)); d != "" {
			t.Errorf("%q: %s", c, d)
		}
	}
	for _, c := range edgeCases {
		if d := listEquivalent([]byte(c)); d != "" {
			t.Errorf("%q: %s", c, d)
		}
		// Each event edge case as the single item of a list, too.
		if d := listEquivalent([]byte(`{"kind":"EventList","items":[` + c + `]}`)); d != "" {
			t.Errorf("as an item: %q: %s", c, d)
		}
	}
	lists, _ := filepath.Glob("../../testdata/eventlists/*")
	for _, f := range lists {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if d := listEquivalent(data); d != "" {
			t.Errorf("%s: %s", f, d)
		}
	}
	// Generated webhook batches, compact and indented.
	g := gen.New(gen.Config{Seed: 5, AttackRatio: 0.2})
	for range 5 {
		var buf bytes.Buffer
		buf.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`)
		for i := range 400 {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(g.Next().JSON)
		}
		buf.WriteString("]}")
		if d := listEquivalent(buf.Bytes()); d != "" {
			t.Fatalf("generated list: %s", d)
		}
		var ind bytes.Buffer
		if err := json.Indent(&ind, buf.Bytes(), "", "  "); err != nil {
			t.Fatal(err)
		}
		if d := listEquivalent(ind.Bytes()); d != "" {
			t.Fatalf("indented generated list: %s", d)
		}
	}
}

// FuzzSplitEquivalence holds SplitEventList and DecodeEvents to
// encoding/json over their wire structs.
func FuzzSplitEquivalence(f *testing.F) {
	for _, c := range listEdgeCases {
		f.Add([]byte(c))
	}
	lists, _ := filepath.Glob("../../testdata/eventlists/*")
	for _, file := range lists {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"kind":"EventList","items":[` + testEventJSON + `]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if d := listEquivalent(data); d != "" {
			t.Fatalf("%q: %s", data, d)
		}
	})
}
