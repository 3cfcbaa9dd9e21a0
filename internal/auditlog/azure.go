package auditlog

import (
	"bytes"

	"github.com/auditpipe/auditpipe/internal/cloud/aks"
)

// azureRecords hands fn the audit events of data when it holds AKS
// diagnostic records as Azure Monitor writes them: a storage-account blob's
// line (one record since 2018), a {"records":[…]} envelope (an Event Hubs
// body, an older blob, as one line or as a whole pretty-printed file). It
// reports false, having called nothing, for anything else, including
// malformed JSON: the caller's own path reports that. Records of other
// categories (kube-apiserver, guard, …) are skipped; each event carries the
// cluster's resource ID as aks.AnnotationResourceID. Items are numbered by
// record, from 1.
func azureRecords(line int, data []byte, fn func(line, item int, data []byte) error) (bool, error) {
	// An apiserver event never has these members at its top level; the
	// check keeps plain events off the records decoder, which would walk
	// them to the end before saying no.
	if len(data) == 0 || data[0] != '{' ||
		!(bytes.Contains(data, []byte(`"records"`)) || bytes.Contains(data, []byte(`"category"`))) {
		return false, nil
	}
	recs, err := aks.Decode(data, nil)
	if err != nil {
		return false, nil
	}
	for i := range recs {
		r := &recs[i]
		if !r.IsAudit() {
			continue
		}
		ev := r.Log
		// An event that is not an object is handed on as it is, for the
		// caller's decoder to name what is wrong with it.
		if out, err := aks.Annotate(r); err == nil {
			ev = out
		}
		if err := fn(line, i+1, ev); err != nil {
			return true, err
		}
	}
	return true, nil
}
