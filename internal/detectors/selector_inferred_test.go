package detectors

import (
	"testing"

	"github.com/auditpipe/auditpipe/internal/cloud"
	"github.com/auditpipe/auditpipe/internal/cloud/gke"
	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// selectorGKEEntry renders one of GKE's Kubernetes audit LogEntries as
// Cloud Logging writes it: no request URI, so no query and no selectors.
func selectorGKEEntry(method, resourceName, user, ua, status string) string {
	return `{"insertId":"9a1c7e52-3b4d-4f6a-8e2b-1c0d9e8f7a6b","logName":"projects/acme-prod/logs/cloudaudit.googleapis.com%2Fdata_access",` +
		`"timestamp":"2026-11-30T10:33:00.000000Z","receiveTimestamp":"2026-11-30T10:33:01.104000Z",` +
		`"operation":{"id":"9a1c7e52-3b4d-4f6a-8e2b-1c0d9e8f7a6b","producer":"k8s.io","first":true,"last":true},` +
		`"labels":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""},` +
		`"resource":{"type":"k8s_cluster","labels":{"cluster_name":"prod-eu1","location":"europe-west1","project_id":"acme-prod"}},` +
		`"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","serviceName":"k8s.io","methodName":"` + method + `",` +
		`"resourceName":"` + resourceName + `","authenticationInfo":{"principalEmail":"` + user + `"},` +
		`"requestMetadata":{"callerIp":"10.132.0.7","callerSuppliedUserAgent":"` + ua + `"},"status":` + status + `}}`
}

// selectorFromGKE converts entry with the real converter and decodes the
// result as detect does.
func selectorFromGKE(t *testing.T, entry string) *pipeline.Event {
	t.Helper()
	ev, err := gke.Convert([]byte(entry))
	if err != nil {
		t.Fatalf("converting LogEntry: %v", err)
	}
	return decodeTestEvent(t, string(ev))
}

// TestSelectorDetectorInferredURI pins that broad-selector does not judge
// selectors a converter could not see: GKE's events carry a requestURI
// rebuilt without its query, so every list would look unselected. Each
// look-alike is paired with the webhook's event, where the detector fires.
func TestSelectorDetectorInferredURI(t *testing.T) {
	d := newSelectorDetector(defaultSelectorConfig())
	const gkeNode = "gke-prod-eu1-pool-1-abcd"
	gkeKubelet := "kubelet/v1.31.2-gke.1146000 (linux/amd64) kubernetes/1a2b3c4"

	// The bad case from the webhook: alice lists every secret.
	selectorCheck(t, d, selectorTestEvent(t, selectorReq{verb: "list", uri: "/api/v1/secrets?limit=500", user: "alice@example.com", ua: selectorKubectlUA, resource: "secrets"}),
		selectorWant{"broad", pipeline.SeverityHigh})
	// Its GKE look-alike: the same list, or one narrowed by a selector
	// GKE did not keep; nothing tells them apart, so no finding.
	t.Run("gke secrets list", func(t *testing.T) {
		ev := selectorFromGKE(t, selectorGKEEntry("io.k8s.core.v1.secrets.list", "core/v1/secrets", "alice@example.com", selectorKubectlUA, "{}"))
		if !selectorURIInferred(ev) {
			t.Fatalf("the converter's event is not marked as having an inferred requestURI: %v", ev.Annotations)
		}
		selectorCheck(t, d, ev, selectorWant{})
	})

	// A kubelet's watch of its own pods: narrowed by spec.nodeName on the
	// webhook; on GKE the selector is gone.
	selectorCheck(t, d, selectorTestEvent(t, selectorReq{verb: "watch", uri: "/api/v1/pods?watch=true", user: "system:node:" + gkeNode, groups: selectorNodeGroups, ua: gkeKubelet, resource: "pods"}),
		selectorWant{"node-pods", pipeline.SeverityHigh})
	t.Run("gke kubelet pod watch", func(t *testing.T) {
		ev := selectorFromGKE(t, selectorGKEEntry("io.k8s.core.v1.pods.watch", "core/v1/pods", "system:node:"+gkeNode, gkeKubelet, "{}"))
		selectorCheck(t, d, ev, selectorWant{})
	})

	// What does not depend on the query is still judged on GKE: a node
	// reading another node by name (the name is in resourceName), and the
	// node authorizer's refusal (in the status).
	t.Run("gke node reads another node", func(t *testing.T) {
		ev := selectorFromGKE(t, selectorGKEEntry("io.k8s.core.v1.nodes.watch", "core/v1/nodes/gke-prod-eu1-pool-2-wxyz", "system:node:"+gkeNode, "curl/8.5.0", "{}"))
		selectorCheck(t, d, ev, selectorWant{"node-nodes", pipeline.SeverityCritical})
	})
	t.Run("gke node authorizer refusal", func(t *testing.T) {
		msg := `pods is forbidden: User \"system:node:` + gkeNode + `\" cannot list resource \"pods\" in API group \"\" at the cluster scope: ` + selectorNodePodsReason
		ev := selectorFromGKE(t, selectorGKEEntry("io.k8s.core.v1.pods.list", "core/v1/pods", "system:node:"+gkeNode, "curl/8.5.0", `{"code":7,"message":"`+msg+`"}`))
		selectorCheck(t, d, ev, selectorWant{"node-forbidden", pipeline.SeverityCritical})
	})
}

// TestSelectorURIInferred reads the marker as the converters write it, and
// only for the source the event names.
func TestSelectorURIInferred(t *testing.T) {
	if selectorSourceAnnotation != cloud.AnnotationSource || selectorInferredPrefix+gke.Source+selectorInferredSuffix != gke.AnnotationInferred {
		t.Fatalf("the detector's annotation keys differ from the converter's: %q, %q", cloud.AnnotationSource, gke.AnnotationInferred)
	}
	f := func(ann map[string]string, want bool) {
		t.Helper()
		ev := &pipeline.Event{}
		ev.Annotations = ann
		if got := selectorURIInferred(ev); got != want {
			t.Errorf("selectorURIInferred(%v) = %v, want %v", ann, got, want)
		}
	}
	f(nil, false)
	f(map[string]string{gke.AnnotationInferred: "request-uri"}, false) // no source
	f(map[string]string{cloud.AnnotationSource: "gke", gke.AnnotationInferred: "timestamps,request-uri,groups"}, true)
	f(map[string]string{cloud.AnnotationSource: "gke", gke.AnnotationInferred: "request-uri"}, true)
	f(map[string]string{cloud.AnnotationSource: "gke", gke.AnnotationInferred: "timestamps,groups"}, false)
	f(map[string]string{cloud.AnnotationSource: "gke", gke.AnnotationInferred: "request-uris"}, false)
	f(map[string]string{cloud.AnnotationSource: "eks", gke.AnnotationInferred: "request-uri"}, false) // another source's marker
}
