package spool

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// TestFileDeadLetters: embedded mode's dead letters are JSON lines keeping
// the original bytes, the reason, the error and the position.
func TestFileDeadLetters(t *testing.T) {
	path := filepath.Join(t.TempDir(), DeadLetterFileName)
	d, err := OpenFileDeadLetters(path)
	if err != nil {
		t.Fatal(err)
	}
	bad := []byte("{\"kind\":\"Event\",\"auditID\":\x00")
	err = d.WriteDeadLetters(context.Background(), []pipeline.DeadLetter{
		{Record: pipeline.Record{Message: pipeline.Message{Key: []byte("prod/x"), Value: bad, Cluster: "prod"}, Partition: 3, Offset: 1234}, Reason: pipeline.ReasonDecode, Err: errors.New("decoding audit event: unexpected end of JSON input")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil || d.Close() != nil {
		t.Fatalf("Close: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Reason, Error, Cluster, Key, Value string
		Partition                          int
		Offset                             int64
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("dead-letter line %q: %v", data, err)
	}
	if got.Reason != "decode" || !strings.Contains(got.Error, "unexpected end") || got.Value != string(bad) || got.Partition != 3 || got.Offset != 1234 || got.Key != "prod/x" {
		t.Errorf("dead letter = %+v", got)
	}
}
