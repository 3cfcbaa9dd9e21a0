// Package aks reads Azure Kubernetes Service audit logs in the shape Azure
// Monitor's diagnostic settings deliver them: resource-log records whose
// properties.log holds one kube-apiserver audit event as a JSON string.
//
// The same records arrive in three wrappings, all read by Decode:
//   - an Event Hubs message body: {"records":[record, …]};
//   - a storage-account blob (PT1H.json) since November 2018: one record
//     per line, no envelope;
//   - a blob written before that, or a saved Event Hubs body: the envelope
//     as one document, possibly pretty-printed.
//
// A record, as AKS writes it (fields beyond these are ignored):
//
//	{"time":"2026-12-04T08:00:00Z",
//	 "resourceId":"/SUBSCRIPTIONS/<sub>/RESOURCEGROUPS/<rg>/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/<name>",
//	 "category":"kube-audit","operationName":"Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
//	 "properties":{"log":"{\"kind\":\"Event\",…}\n","stream":"stdout","pod":"kube-apiserver-…"}}
//
// Everything here is a pure function of its input, linear in it, and never
// panics: the log strings carry whatever an attacker put in a request.
package aks

import (
	"bytes"
	"errors"

	"github.com/auditpipe/auditpipe/internal/cloud"
	"github.com/auditpipe/auditpipe/internal/jsonscan"
)

// The diagnostic-setting categories that carry kube-apiserver audit events.
// kube-audit-admin is kube-audit without get and list requests.
const (
	CategoryAudit      = "kube-audit"
	CategoryAuditAdmin = "kube-audit-admin"
)

// Annotations auditpipe adds to every event read from AKS, besides
// cloud.AnnotationSource ("aks"). The cluster auditpipe files the event under
// is an operator's choice (--cluster, a mapping); these keep the provider's
// own names for where it came from. Like every auditpipe.io/ annotation they
// do not enter the content hash, so the kube-audit and kube-audit-admin
// copies of one event still deduplicate.
const (
	// AnnotationResourceID is the Azure resource ID of the managed
	// cluster, as the record names it (AKS writes it in upper case).
	AnnotationResourceID = cloud.AnnotationPrefix + "aks-resource-id"
	// AnnotationCategory is the diagnostic-setting category the event
	// came in: kube-audit or kube-audit-admin.
	AnnotationCategory = cloud.AnnotationPrefix + "aks-category"
	// Source is the value of cloud.AnnotationSource.
	Source = "aks"
)

// Record is one resource-log record: where it came from and the audit event
// it carries.
type Record struct {
	// Category is the diagnostic-setting category, e.g. kube-audit.
	Category string
	// ResourceID is the Azure resource ID of the cluster.
	ResourceID string
	// Log is properties.log unquoted with surrounding whitespace trimmed
	// (AKS ends it with a newline): for the audit categories, one audit
	// event's JSON. Nil when the record has none. A log given as a JSON
	// object instead of a string is taken as it is.
	Log []byte
}

// IsAudit reports whether the record's category carries audit events.
func (r *Record) IsAudit() bool {
	return IsAuditCategory(r.Category)
}

// IsAuditCategory reports whether category is kube-audit or
// kube-audit-admin (Azure's names are lower case; case is ignored).
func IsAuditCategory(category string) bool {
	return len(category) >= len(CategoryAudit) &&
		(equalFold(category, CategoryAudit) || equalFold(category, CategoryAuditAdmin))
}

func equalFold(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }

// ErrNotRecords reports a JSON document that is neither a records envelope
// nor a single resource-log record.
var ErrNotRecords = errors.New("not an Azure resource-log document: want {\"records\":[…]} or a record with category and properties")

// Decode appends the records of data, an envelope or a single record, to dst.
// It returns ErrNotRecords (wrapped) when data is well-formed JSON of another
// shape, and a syntax or type error when it is not JSON or a field has the
// wrong type. On error dst is returned as it was given. A record's Log
// aliases data when the string had no escapes, which an audit event's
// always has, so it is valid only as long as data.
func Decode(data []byte, dst []Record) ([]Record, error) {
	n := len(dst)
	out, err := decode(data, dst)
	if err != nil {
		clear(out[n:])
		return dst[:n], err
	}
	return out, nil
}

// Top-level shapes told apart while reading the object's members.
const (
	shapeUnknown = iota
	shapeEnvelope
	shapeRecord
)

func decode(data []byte, dst []Record) ([]Record, error) {
	d := jsonscan.Scanner{Data: data}
	c, err := d.Peek()
	if err != nil {
		return dst, err
	}
	if c != '{' {
		if err := d.Skip(0); err != nil {
			return dst, err
		}
		return dst, ErrNotRecords
	}
	// A document is an envelope when it has a records array, and a single
	// record when it has a category or properties member instead. Both
	// are decoded as they come; which one it was is settled at the end.
	var single Record
	shape := shapeUnknown
	n := len(dst)
	more, err := d.ObjectStart()
	for more && err == nil {
		var k []byte
		if k, err = d.Key(); err != nil {
			return dst, err
		}
		switch {
		case bytes.EqualFold(k, []byte("records")):
			if d.Data[d.Pos] != '[' {
				// Mismatch always returns an error naming what was found.
				return dst, d.Mismatch(1, "records", "array")
			}
			// A second records array (never written by Azure) adds its
			// records; nothing is lost or double-counted by that.
			shape = shapeEnvelope
			var elem bool
			elem, err = d.ArrayStart()
			for elem && err == nil {
				var r Record
				if err = record(&d, &r, 2, "records[]"); err != nil {
					return dst, err
				}
				dst = append(dst, r)
				elem, err = d.ArrayNext()
			}
		case bytes.EqualFold(k, []byte("category")), bytes.EqualFold(k, []byte("resourceId")), bytes.EqualFold(k, []byte("properties")):
			if shape == shapeUnknown {
				shape = shapeRecord
			}
			err = member(&d, &single, k, 1, "")
		default:
			err = d.Skip(1)
		}
		if err != nil {
			return dst, err
		}
		more, err = d.ObjectNext()
	}
	if err != nil {
		return dst, err
	}
	d.WS()
	if d.Pos < len(d.Data) {
		return dst, d.Syntax("after top-level value")
	}
	switch shape {
	case shapeEnvelope:
		return dst, nil
	case shapeRecord:
		return append(dst[:n], single), nil
	}
	return dst, ErrNotRecords
}

// record decodes one record object at d.Pos into r.
func record(d *jsonscan.Scanner, r *Record, depth int, field string) error {
	if d.Data[d.Pos] != '{' {
		return d.Mismatch(depth, field, "object")
	}
	if depth >= jsonscan.MaxDepth {
		return &jsonscan.SyntaxError{Msg: "exceeded max depth", Offset: d.Pos}
	}
	more, err := d.ObjectStart()
	for more && err == nil {
		var k []byte
		if k, err = d.Key(); err != nil {
			return err
		}
		if err = member(d, r, k, depth+1, field+"."); err != nil {
			return err
		}
		more, err = d.ObjectNext()
	}
	return err
}

// member decodes the record member named k whose value is at d.Pos.
func member(d *jsonscan.Scanner, r *Record, k []byte, depth int, prefix string) error {
	switch {
	case bytes.EqualFold(k, []byte("category")):
		return d.StringOrNull(&r.Category, depth, prefix+"category")
	case bytes.EqualFold(k, []byte("resourceId")):
		return d.StringOrNull(&r.ResourceID, depth, prefix+"resourceId")
	case bytes.EqualFold(k, []byte("properties")):
		return properties(d, r, depth, prefix+"properties")
	}
	return d.Skip(depth)
}

// properties decodes the properties object, keeping its log.
func properties(d *jsonscan.Scanner, r *Record, depth int, field string) error {
	switch d.Data[d.Pos] {
	case '{':
	case 'n':
		return d.Literal()
	default:
		return d.Mismatch(depth, field, "object")
	}
	if depth >= jsonscan.MaxDepth {
		return &jsonscan.SyntaxError{Msg: "exceeded max depth", Offset: d.Pos}
	}
	more, err := d.ObjectStart()
	for more && err == nil {
		var k []byte
		if k, err = d.Key(); err != nil {
			return err
		}
		if bytes.EqualFold(k, []byte("log")) {
			err = logValue(d, r, depth+1)
		} else {
			err = d.Skip(depth + 1)
		}
		if err != nil {
			return err
		}
		more, err = d.ObjectNext()
	}
	return err
}

// logValue reads properties.log: a string holding the event (what AKS
// writes), or the event itself as an object.
func logValue(d *jsonscan.Scanner, r *Record, depth int) error {
	switch d.Data[d.Pos] {
	case '"':
		s, err := d.Str()
		if err != nil {
			return err
		}
		r.Log = bytes.TrimSpace(s)
		return nil
	case '{':
		start := d.Pos
		if err := d.Skip(depth); err != nil {
			return err
		}
		r.Log = d.Data[start:d.Pos]
		return nil
	case 'n':
		r.Log = nil
		return d.Literal()
	}
	return d.Mismatch(depth, "properties.log", "string")
}

// Annotate returns a copy of r's event with the auditpipe.io/ annotations
// of an AKS event set (cloud.Annotate: any the event already had are
// dropped, the apiserver's own are kept byte for byte). An event that is not
// a JSON object is an error; the caller should hand it on unchanged for its
// decoder to reject.
func Annotate(r *Record) ([]byte, error) {
	return cloud.Annotate(r.Log, cloud.AnnotationSource, Source, AnnotationResourceID, r.ResourceID, AnnotationCategory, r.Category)
}

// ClusterName returns the managed cluster's name from an AKS resource ID
// (…/providers/Microsoft.ContainerService/managedClusters/<name>), as the ID
// spells it, or "" when the ID names no managed cluster. Azure treats
// resource IDs case-insensitively and AKS writes them in upper case.
func ClusterName(resourceID string) string {
	const marker = "/providers/microsoft.containerservice/managedclusters/"
	lower := bytes.ToLower([]byte(resourceID))
	i := bytes.LastIndex(lower, []byte(marker))
	if i < 0 {
		return ""
	}
	name := resourceID[i+len(marker):]
	if j := bytes.IndexByte([]byte(name), '/'); j >= 0 {
		name = name[:j]
	}
	return name
}
