package detectors

import (
	"testing"

	"github.com/auditpipe/auditpipe/internal/pipeline"
)

// TestImagePullPublicKubernetesRegistries: images from the Kubernetes
// project's registries (the frozen k8s.gcr.io included) and the clouds'
// public system-image registries need no credential, so a cached copy is
// not a leak; look-alike hosts and paths still are. Each case is judged from
// the stored pod (RequestResponse) and from the pod as sent (Request).
func TestImagePullPublicKubernetesRegistries(t *testing.T) {
	d := imageTestDetector(t, nil)
	pod := func(image string) string {
		return podSpecTestPod("shop", "api", "", `{"containers":[{"name":"api","image":"`+image+`","imagePullPolicy":"IfNotPresent"}]}`)
	}
	leak := []imageWant{{"cached-private-image:api", pipeline.SeverityHigh}}
	tests := []struct {
		image string
		want  []imageWant
	}{
		{"k8s.gcr.io/pause:3.9", nil},
		{"k8s.gcr.io/kube-proxy:v1.23.17", nil},
		{"registry.k8s.io/coredns/coredns:v1.11.3", nil},
		{"gcr.io/google-containers/pause:3.2", nil},
		{"gcr.io/google_containers/kube-state-metrics:v1.9.8", nil},
		{"gke.gcr.io/gke-metadata-server:20240101_2300_RC0", nil},
		{"public.ecr.aws/eks-distro/kubernetes/pause:3.9", nil},
		{"mcr.microsoft.com/oss/kubernetes/pause:3.6", nil},
		// Look-alikes: another host, or another project beside google-containers.
		{"k8s.gcr.io.registry.example.net/pause:3.9", leak},
		{"gcr.io/google-containers-mirror/pause:3.2", leak},
		{"gcr.io/acme-prod/pause:3.2", leak},
	}
	for _, tt := range tests {
		for _, level := range []string{"RequestResponse", "Request"} {
			t.Run(tt.image+"/"+level, func(t *testing.T) {
				r := podSpecTestReq{level: level, resp: pod(tt.image)}
				if level == "Request" {
					r = podSpecTestReq{level: level, req: pod(tt.image)}
				}
				want := tt.want
				if level == "Request" && want != nil {
					// The service account may yet add pull secrets: one level lower.
					want = []imageWant{{"cached-private-image:api", pipeline.SeverityMedium}}
				}
				imageCheck(t, d, want, podSpecTestEvent(t, r))
			})
		}
	}
}
