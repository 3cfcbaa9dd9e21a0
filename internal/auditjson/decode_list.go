package auditjson

import (
	"fmt"

	"github.com/auditpipe/auditpipe/internal/jsonscan"
)

// EventList envelopes and the Event/EventList probe, on the same scanner as
// the event decoder and with encoding/json's semantics for the wire struct
// {kind, apiVersion string; items []json.RawMessage}: names match
// case-insensitively, unknown members are validated and skipped, a null
// item is the item `null`, and a repeated "items" replaces the earlier one.

var listFields = []string{"kind", "apiVersion", "items"}

// splitEventListFast reads an EventList's envelope and returns its items as
// slices of data (validated, not decoded). items is nil when the list has
// no items member (or it is null), empty when it is [].
func splitEventListFast(data []byte, buf [][]byte, maxItems int) (kind, apiVersion string, items [][]byte, err error) {
	d := eventDecoder{Scanner: jsonscan.Scanner{Data: data}}
	if _, err := d.Peek(); err != nil {
		return "", "", nil, err
	}
	// The caller has checked for '{'.
	more, err := d.ObjectStart()
	for more && err == nil {
		var k []byte
		if k, err = d.Key(); err != nil {
			return "", "", nil, err
		}
		switch lookupField(listFields, k) {
		case 0:
			err = d.internString(&kind, 1, "kind")
		case 1:
			err = d.internString(&apiVersion, 1, "apiVersion")
		case 2:
			if items == nil {
				items = buf
			}
			items, err = d.rawItems(items, maxItems)
		default:
			err = d.Skip(1)
		}
		if err != nil {
			return "", "", nil, err
		}
		more, err = d.ObjectNext()
	}
	if err != nil {
		return "", "", nil, err
	}
	d.WS()
	if d.Pos < len(data) {
		return "", "", nil, d.Syntax("after top-level value")
	}
	return kind, apiVersion, items, nil
}

// rawItems reads the items array as raw values; prev is what an earlier
// "items" member left, reused for its capacity.
func (d *eventDecoder) rawItems(prev [][]byte, maxItems int) ([][]byte, error) {
	switch d.Data[d.Pos] {
	case '[':
	case 'n':
		return nil, d.Literal()
	default:
		return nil, d.Mismatch(1, "items", "[]json.RawMessage")
	}
	items := prev[:0]
	if items == nil {
		// A webhook batch holds up to 400 events; start with room for a
		// typical one rather than growing from one.
		items = make([][]byte, 0, 64)
	}
	more, err := d.ArrayStart()
	for more && err == nil {
		start := d.Pos
		if err = d.Skip(2); err != nil {
			return nil, err
		}
		if maxItems > 0 && len(items) == maxItems {
			return nil, fmt.Errorf("%w: more than %d", ErrTooManyItems, maxItems)
		}
		items = append(items, d.Data[start:d.Pos:d.Pos])
		more, err = d.ArrayNext()
	}
	return items, err
}

// probeKind reads only the top-level kind of an object, validating the
// rest, as decoding into struct{Kind string} would.
func probeKind(data []byte) (string, error) {
	d := eventDecoder{Scanner: jsonscan.Scanner{Data: data}}
	if _, err := d.Peek(); err != nil {
		return "", err
	}
	var kind string
	more, err := d.ObjectStart()
	for more && err == nil {
		var k []byte
		if k, err = d.Key(); err != nil {
			return "", err
		}
		if lookupField(listFields[:1], k) == 0 {
			err = d.internString(&kind, 1, "kind")
		} else {
			err = d.Skip(1)
		}
		if err != nil {
			return "", err
		}
		more, err = d.ObjectNext()
	}
	if err != nil {
		return "", err
	}
	d.WS()
	if d.Pos < len(data) {
		return "", d.Syntax("after top-level value")
	}
	return kind, nil
}
