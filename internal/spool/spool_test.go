package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

func testMessage(i int) pipeline.Message {
	ev := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%08d-0000-4000-8000-000000000000","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?limit=500\u0026labelSelector=app%%3Dweb","verb":"list","user":{"username":"alice@example.com"},"sourceIPs":["10.0.0.%d"]}`, i, i%250)
	return pipeline.Message{Key: []byte(fmt.Sprintf("prod/alice-%d", i)), Value: []byte(ev), Cluster: "prod"}
}

func fetchN(t *testing.T, r *Reader, n int) []pipeline.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var recs []pipeline.Record
	for len(recs) < n {
		rec, err := r.Fetch(ctx)
		if err != nil {
			t.Fatalf("fetching record %d: %v", len(recs), err)
		}
		recs = append(recs, rec)
	}
	return recs
}

func TestSpoolRoundTripAcrossSegmentsAndRestart(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(WriterConfig{Dir: dir, SegmentBytes: 4096}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var batch []pipeline.Message
	for i := range n {
		batch = append(batch, testMessage(i))
		if len(batch) == 7 {
			if err := w.Produce(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := w.Produce(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	segs, _ := listSegments(dir)
	if len(segs) < 3 {
		t.Fatalf("want rotation into several segments, got %d", len(segs))
	}

	r, err := NewReader(ReaderConfig{Dir: dir, DeleteConsumed: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs := fetchN(t, r, 120)
	for i, rec := range recs {
		want := testMessage(i)
		if string(rec.Value) != string(want.Value) || string(rec.Key) != string(want.Key) || rec.Cluster != "prod" {
			t.Fatalf("record %d = %q %q %q, want %q", i, rec.Cluster, rec.Key, rec.Value, want.Value)
		}
	}
	if err := r.Commit(context.Background(), recs[:100]); err != nil {
		t.Fatal(err)
	}
	r.Close()

	// A new reader of the same group resumes right after the commit: the
	// 20 fetched but uncommitted records are delivered again.
	r2, err := NewReader(ReaderConfig{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	rest := fetchN(t, r2, n-100)
	for i, rec := range rest {
		if want := testMessage(100 + i); string(rec.Value) != string(want.Value) {
			t.Fatalf("after restart record %d = %s, want %s", i, rec.Value, want.Value)
		}
	}
	segsAfter, _ := listSegments(dir)
	if len(segsAfter) >= len(segs) {
		t.Fatalf("consumed segments not deleted: %d before, %d after", len(segs), len(segsAfter))
	}
}

func TestSpoolTailsWriterAndWaitsForCompleteLines(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(WriterConfig{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := NewReader(ReaderConfig{Dir: dir, PollInterval: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// Half a line, as a writer caught mid-write leaves it: not delivered.
	seg := filepath.Join(dir, segmentName(1))
	f, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := appendLine(nil, testMessage(0))
	f.Write(line[:len(line)/2])
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if _, err := r.Fetch(ctx); err == nil {
		t.Fatal("fetched a record from half a line")
	}
	cancel()
	f.Write(line[len(line)/2:])
	f.Close()
	got := fetchN(t, r, 1)
	if string(got[0].Value) != string(testMessage(0).Value) {
		t.Fatalf("got %s", got[0].Value)
	}
}

func TestSpoolSecondWriterRefused(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(WriterConfig{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := NewWriter(WriterConfig{Dir: dir}, nil); err == nil {
		t.Fatal("a second writer got the lock")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSpoolPrettyPrintedEventIsCompacted(t *testing.T) {
	dir := t.TempDir()
	w, _ := NewWriter(WriterConfig{Dir: dir}, nil)
	defer w.Close()
	msg := pipeline.Message{Key: []byte("c/u"), Cluster: "c", Value: []byte("{\n  \"verb\": \"get\"\n}")}
	if err := w.Produce(context.Background(), []pipeline.Message{msg}); err != nil {
		t.Fatal(err)
	}
	r, _ := NewReader(ReaderConfig{Dir: dir}, nil)
	defer r.Close()
	if got := fetchN(t, r, 1)[0]; string(got.Value) != `{"verb":"get"}` {
		t.Fatalf("got %q", got.Value)
	}
}
