package alert

import (
	"time"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// fixtureTime is a fixed event time so golden files are stable.
var fixtureTime = time.Date(2026, 11, 27, 3, 14, 15, 0, time.UTC)

// fixtures are one realistic finding per built-in detector, shaped like
// what internal/detectors produces for the KEP scenarios.
func fixtures() []pipeline.Finding {
	return []pipeline.Finding{
		{
			ID: "6f1c0a8e2b7d4c1f9a3e5b7d9c1e3f50", Time: fixtureTime, Cluster: "prod-eu1", Detector: "anonymous-access", Severity: pipeline.SeverityCritical,
			AuditID: "8a4c3b2e-5f1d-4e6a-9b7c-0d1e2f3a4b5c", Stage: "ResponseComplete",
			Summary:  `Anonymous (unauthenticated) client 203.0.113.7 was allowed to list secrets (/api/v1/namespaces/kube-system/secrets): anonymous access reaches API resources`,
			Evidence: []pipeline.Evidence{{Field: "user.username", Value: "system:anonymous", Source: "event"}, {Field: "user.groups", Value: "system:unauthenticated", Source: "event"}, {Field: "path", Value: "/api/v1/namespaces/kube-system/secrets", Source: "event"}, {Field: "verb", Value: "list", Source: "event"}, {Field: "annotations.authorization.k8s.io/decision", Value: "allow", Source: "event"}, {Field: "annotations.authorization.k8s.io/reason", Value: `RBAC: allowed by ClusterRoleBinding "debug-anon" of ClusterRole "view" to Group "system:unauthenticated"`, Source: "event"}},
			Username: "system:anonymous", Groups: []string{"system:unauthenticated"}, SourceIP: "203.0.113.7", UserAgent: "curl/8.5.0",
			Verb: "list", RequestURI: "/api/v1/namespaces/kube-system/secrets", Resource: "secrets", Namespace: "kube-system", Code: 200, MITRE: "T1078.001",
		},
		{
			ID: "0b9e8d7c6a5f4e3d2c1b0a9f8e7d6c5b", Time: fixtureTime, Cluster: "prod-eu1", Detector: "stale-token", Severity: pipeline.SeverityMedium,
			AuditID: "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", Stage: "ResponseComplete",
			Summary:  "stale bound token of system:serviceaccount:payments:api used 2h13m past its refresh deadline",
			Evidence: []pipeline.Evidence{{Field: "annotations.authentication.k8s.io/stale-token", Value: "subject: system:serviceaccount:payments:api, seconds after warning threshold: 7980", Source: "event"}},
			Username: "system:serviceaccount:payments:api", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:payments", "system:authenticated"},
			CredentialID: "JTI=7b1e2f3a-4c5d-4e6f-8a9b-0c1d2e3f4a5b", SourceIP: "10.42.3.17", UserAgent: "payments-api/1.14.2 (linux/amd64) kubernetes/v0.31.0",
			Verb: "get", RequestURI: "/api/v1/namespaces/payments/configmaps/feature-flags", Resource: "configmaps", Namespace: "payments", Name: "feature-flags", Code: 200, MITRE: "T1528",
		},
		{
			ID: "2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f", Time: fixtureTime, Cluster: "prod-us2", Detector: "legacy-token", Severity: pipeline.SeverityHigh,
			AuditID: "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", Stage: "ResponseComplete",
			Summary:  "revoked legacy service-account token from secret ci/deployer-token-x7k2q was presented from 198.51.100.23 (rejected)",
			Evidence: []pipeline.Evidence{{Field: "annotations.authentication.k8s.io/legacy-token-invalidated", Value: "ci/deployer-token-x7k2q", Source: "event"}, {Field: "annotations.authentication.k8s.io/legacy-token", Value: "system:serviceaccount:ci:deployer", Source: "event"}},
			Username: "system:anonymous", SourceIP: "198.51.100.23", UserAgent: "kubectl/v1.29.1 (linux/amd64) kubernetes/bc401b9",
			Verb: "list", RequestURI: "/api/v1/secrets", Resource: "secrets", Code: 401, MITRE: "T1550.001",
		},
		{
			ID: "3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f80", Time: fixtureTime, Cluster: "prod-eu1", Detector: "token-replay", Severity: pipeline.SeverityCritical,
			AuditID: "4a5b6c7d-8e9f-4a0b-9c1d-2e3f4a5b6c7d", Stage: "ResponseComplete",
			Summary:  "token of system:serviceaccount:payments:api bound to deleted pod payments/api-7d9f8b6c5-x2k4p used from 185.220.101.4 (python-requests); minted by system:node:ip-10-0-3-17",
			Evidence: []pipeline.Evidence{{Field: "user.extra.authentication.kubernetes.io/credential-id", Value: "JTI=5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9", Source: "event"}, {Field: "user.extra.authentication.kubernetes.io/pod-name", Value: "api-7d9f8b6c5-x2k4p", Source: "event"}, {Field: "sourceIPs", Value: "185.220.101.4", Source: "event"}, {Field: "request.headers.authorization", Value: "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cGF5bWVudHM6YXBpIn0.c2lnbmF0dXJl", Source: "request"}},
			Username: "system:serviceaccount:payments:api", Groups: []string{"system:serviceaccounts", "system:authenticated"},
			CredentialID: "JTI=5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9", SourceIP: "185.220.101.4", UserAgent: "python-requests/2.31.0",
			Verb: "get", RequestURI: "/api/v1/namespaces/payments/secrets/stripe-key", Resource: "secrets", Namespace: "payments", Name: "stripe-key", Code: 200, MITRE: "T1550.001",
		},
		{
			ID: "4e5f6a7b8c9d0e1f2a3b4c5d6e7f8091", Time: fixtureTime, Cluster: "staging", Detector: "unsecured-image-pull", Severity: pipeline.SeverityHigh,
			AuditID: "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e", Stage: "ResponseComplete",
			Summary:  "pod tenant-b/miner-5x8k2 runs private image registry.corp.example/team-a/billing:2.3 with imagePullPolicy IfNotPresent and no imagePullSecrets, pinned to node ip-10-0-7-21: it can start from another tenant's cached image",
			Evidence: []pipeline.Evidence{{Field: "spec.containers[0].image", Value: "registry.corp.example/team-a/billing:2.3", Source: "response"}, {Field: "spec.containers[0].imagePullPolicy", Value: "IfNotPresent", Source: "response"}, {Field: "spec.imagePullSecrets", Value: "", Source: "response"}, {Field: "spec.nodeName", Value: "ip-10-0-7-21", Source: "request"}},
			Username: "jane@corp.example", Groups: []string{"tenant-b-devs", "system:authenticated"}, SourceIP: "192.0.2.44", UserAgent: "kubectl/v1.30.2 (darwin/arm64) kubernetes/3968350",
			Verb: "create", RequestURI: "/api/v1/namespaces/tenant-b/pods", Resource: "pods", Namespace: "tenant-b", Name: "miner-5x8k2", Code: 201, MITRE: "T1525",
		},
		{
			ID: "5f6a7b8c9d0e1f2a3b4c5d6e7f8091a2", Time: fixtureTime, Cluster: "prod-eu1", Detector: "unsigned-jwt", Severity: pipeline.SeverityCritical,
			AuditID: "6c7d8e9f-0a1b-4c2d-9e3f-4a5b6c7d8e9f", Stage: "ResponseComplete",
			Summary:  `TokenReview of a token with alg "none" (issuer https://kubernetes.default.svc, subject system:serviceaccount:kube-system:clusterrole-aggregation-controller) was answered authenticated=true`,
			Evidence: []pipeline.Evidence{{Field: "requestObject.spec.token", Value: `{"redacted":"jwt","alg":"none","sha256":"9c1e0f3b5a7d2c4e6f8a0b1c3d5e7f9a"}`, Source: "request"}, {Field: "responseObject.status.authenticated", Value: "true", Source: "response"}},
			Username: "system:serviceaccount:kube-system:generic-garbage-collector", SourceIP: "10.0.0.12", UserAgent: "kube-apiserver/v1.31.0",
			Verb: "create", RequestURI: "/apis/authentication.k8s.io/v1/tokenreviews", Resource: "tokenreviews", Code: 201, MITRE: "T1606.001",
		},
		{
			ID: "6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3", Time: fixtureTime, Cluster: "prod-us2", Detector: "broad-selector", Severity: pipeline.SeverityHigh,
			AuditID: "7d8e9f0a-1b2c-4d3e-8f4a-5b6c7d8e9f0a", Stage: "ResponseComplete",
			Summary:  "node ip-10-0-9-3 listed all pods in all namespaces without a spec.nodeName field selector: a kubelet credential reading beyond its node",
			Evidence: []pipeline.Evidence{{Field: "requestURI", Value: "/api/v1/pods?limit=500", Source: "event"}, {Field: "user.username", Value: "system:node:ip-10-0-9-3", Source: "event"}},
			Username: "system:node:ip-10-0-9-3", Groups: []string{"system:nodes", "system:authenticated"}, SourceIP: "10.0.9.3", UserAgent: "curl/7.88.1",
			Verb: "list", RequestURI: "/api/v1/pods?limit=500", Resource: "pods", Code: 200, MITRE: "T1552.007",
		},
		{
			ID: "7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4", Time: fixtureTime, Cluster: "staging", Detector: "apparmor-unconfined", Severity: pipeline.SeverityMedium,
			AuditID: "8e9f0a1b-2c3d-4e4f-9a5b-6c7d8e9f0a1b", Stage: "ResponseComplete",
			Summary:  "deployment ml/trainer sets appArmorProfile Unconfined on container trainer (privileged: false): the container runs without the runtime's default AppArmor profile",
			Evidence: []pipeline.Evidence{{Field: "spec.template.spec.containers[0].securityContext.appArmorProfile.type", Value: "Unconfined", Source: "request"}},
			Username: "system:serviceaccount:argocd:argocd-application-controller", Groups: []string{"system:serviceaccounts", "system:authenticated"}, SourceIP: "10.1.4.9", UserAgent: "argocd-application-controller/v2.11.3",
			Verb: "patch", RequestURI: "/apis/apps/v1/namespaces/ml/deployments/trainer", Resource: "deployments", Namespace: "ml", Name: "trainer", Code: 200, MITRE: "T1611",
		},
		{
			ID: "8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5", Time: fixtureTime, Cluster: "prod-eu1", Detector: "admission-policy-change", Severity: pipeline.SeverityHigh,
			AuditID: "9f0a1b2c-3d4e-4f5a-8b6c-7d8e9f0a1b2c", Stage: "ResponseComplete",
			Summary:  `mallory@corp.example relabelled namespace payments: pod-security.kubernetes.io/enforce changed from "restricted" to "privileged": pods there are no longer checked`,
			Evidence: []pipeline.Evidence{{Field: "metadata.labels.pod-security.kubernetes.io/enforce", Value: "privileged (was restricted)", Source: "request"}},
			Username: "mallory@corp.example", Groups: []string{"platform-admins", "system:authenticated"}, SourceIP: "192.0.2.99", UserAgent: "kubectl/v1.31.0 (linux/amd64) kubernetes/9e9cd1c",
			Verb: "patch", RequestURI: "/api/v1/namespaces/payments", Resource: "namespaces", Name: "payments", Code: 200, MITRE: "T1562.001",
		},
	}
}

func fixture(detector string) pipeline.Finding {
	for _, f := range fixtures() {
		if f.Detector == detector {
			return f
		}
	}
	panic("no fixture for " + detector)
}

func severityOf(i int) pipeline.Severity { return pipeline.Severity(i) }
