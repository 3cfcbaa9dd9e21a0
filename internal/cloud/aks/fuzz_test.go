package aks

import (
	"encoding/json"
	"os"
	"testing"
)

// FuzzDecodeRecords feeds Decode and Annotate arbitrary bytes: they must not
// panic, must agree with encoding/json on what is JSON, and an annotated
// event must stay JSON.
func FuzzDecodeRecords(f *testing.F) {
	for _, name := range []string{"eventhubs-message.json"} {
		if b, err := os.ReadFile("testdata/" + name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"records":[{"category":"kube-audit","resourceId":"/x","properties":{"log":"{\"auditID\":\"a\",\"annotations\":{\"k\":\"v\"}}\n"}}]}`))
	f.Add([]byte(`{"category":"kube-audit-admin","properties":{"log":{"annotations":null}}}`))
	f.Add([]byte(`{"records":[{"properties":{"log":"\ud800"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := Decode(data, nil)
		if err == nil && !json.Valid(data) {
			t.Fatalf("Decode accepted invalid JSON %q", data)
		}
		for _, r := range recs {
			r.ResourceID = "/subscriptions/s/managedClusters/\"c\""
			out, err := Annotate(&r)
			if err != nil {
				continue
			}
			if !json.Valid(out) {
				t.Fatalf("Annotate(%q) gave invalid JSON %q", r.Log, out)
			}
		}
		if out, err := Annotate(&Record{Log: data, ResourceID: "/r"}); err == nil && !json.Valid(out) {
			t.Fatalf("Annotate(%q) gave invalid JSON %q", data, out)
		}
	})
}
