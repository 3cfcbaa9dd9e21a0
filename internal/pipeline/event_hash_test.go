package pipeline

import (
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/auditpipe/auditpipe/internal/gen"
)

// streamedEventHash is eventHash as it was first written, feeding a
// Digest a field and a separator at a time: the values stored rows and
// finding ids carry.
func streamedEventHash(ev *auditv1.Event, stage bool) uint64 {
	var d xxhash.Digest
	d.Reset()
	var buf [8]byte
	write := func(s string) {
		_, _ = d.WriteString(s)
		_, _ = d.Write([]byte{0})
	}
	write(string(ev.AuditID))
	if stage {
		write(string(ev.Stage))
	}
	write(ev.Verb)
	write(ev.RequestURI)
	write(ev.User.Username)
	write(ev.UserAgent)
	for _, ip := range ev.SourceIPs {
		write(ip)
	}
	binary.LittleEndian.PutUint64(buf[:], uint64(ev.RequestReceivedTimestamp.UnixMicro()))
	_, _ = d.Write(buf[:])
	if stage {
		binary.LittleEndian.PutUint64(buf[:], uint64(ev.StageTimestamp.UnixMicro()))
		_, _ = d.Write(buf[:])
	}
	return d.Sum64()
}

// TestEventHashKeepsValues: ContentHash and RequestHash hash the bytes
// they always hashed, for generated events and for fields longer than
// the stack buffer, so stored rows and finding ids keep their keys; and
// a field moved across a separator changes the hash.
func TestEventHashKeepsValues(t *testing.T) {
	var evs []auditv1.Event
	g := gen.New(gen.Config{Seed: 3, AttackRatio: 0.3})
	for range 2000 {
		var ev auditv1.Event
		if err := json.Unmarshal(g.Next().JSON, &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	long := evs[0]
	long.RequestURI = "/api/v1/namespaces/default/pods?labelSelector=" + strings.Repeat("a", 600)
	long.SourceIPs = []string{"10.0.0.1", "10.0.0.2", "192.168.1.1"}
	evs = append(evs, long, auditv1.Event{}, auditv1.Event{StageTimestamp: metav1.NewMicroTime(time.Unix(1, 0))})
	for i := range evs {
		ev := &evs[i]
		if got, want := ContentHash(ev), streamedEventHash(ev, true); got != want {
			t.Fatalf("event %d (%s): ContentHash %x, want %x", i, ev.AuditID, got, want)
		}
		if got, want := RequestHash(ev), streamedEventHash(ev, false); got != want {
			t.Fatalf("event %d (%s): RequestHash %x, want %x", i, ev.AuditID, got, want)
		}
	}
	a := auditv1.Event{Verb: "get", RequestURI: "/api"}
	b := auditv1.Event{Verb: "get/", RequestURI: "api"}
	if RequestHash(&a) == RequestHash(&b) {
		t.Error("moving a byte from one field to the next keeps the hash: the separator is lost")
	}
}

// BenchmarkEventHash: one RequestHash of a generated event, and the
// streamed hash it replaced.
//
//	go test ./internal/pipeline -run '^$' -bench EventHash -count 6
func BenchmarkEventHash(b *testing.B) {
	var ev auditv1.Event
	if err := json.Unmarshal(gen.New(gen.Config{Seed: 3}).Next().JSON, &ev); err != nil {
		b.Fatal(err)
	}
	b.Run("stack", func(b *testing.B) {
		for b.Loop() {
			RequestHash(&ev)
		}
	})
	b.Run("streamed", func(b *testing.B) {
		for b.Loop() {
			streamedEventHash(&ev, false)
		}
	})
}
