package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// largeEvents builds RequestResponse events whose bodies are big pods and
// deployments (20 KB to 200 KB), the shape that dominates the bytes of a
// cluster audited at RequestResponse level: many containers, long
// environments, and managedFields on every response.
func largeEvents(b testing.TB) (events [][]byte, bytes int64) {
	b.Helper()
	envelope, err := os.ReadFile("../../testdata/events/requestresponse-pod-create.json")
	if err != nil {
		b.Fatal(err)
	}
	for i, containers := range []int{3, 6, 12, 20, 32} {
		for _, kind := range []string{"pod", "deployment"} {
			ev := largeEvent(b, envelope, kind, containers, i)
			events = append(events, ev)
			bytes += int64(len(ev))
		}
	}
	return events, bytes
}

func largeEvent(b testing.TB, envelope []byte, kind string, containers, seed int) []byte {
	b.Helper()
	spec := podSpec(containers, seed)
	meta := metav1.ObjectMeta{
		Name:      fmt.Sprintf("payments-api-%d", seed),
		Namespace: "payments",
		Labels:    map[string]string{"app": "payments-api", "tier": "backend", "team": "payments", "version": fmt.Sprintf("v1.%d.0", seed)},
		Annotations: map[string]string{
			"kubectl.kubernetes.io/last-applied-configuration": fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"payments-api-%d"}}`, seed),
			"prometheus.io/scrape":                             "true", "prometheus.io/port": "9090",
		},
	}
	var req, resp any
	switch kind {
	case "pod":
		p := corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}, ObjectMeta: meta, Spec: spec}
		req = p
		p.UID = "0c3f5a9e-1b2d-4e6f-8a7b-9c0d1e2f3a4b"
		p.ResourceVersion = "48212904"
		p.ManagedFields = managedFields(containers)
		p.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBurstable}
		resp = p
	default:
		replicas := int32(3)
		d := appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{Kind: "Deployment", APIVersion: "apps/v1"},
			ObjectMeta: meta,
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "payments-api"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: meta.Labels}, Spec: spec},
			},
		}
		req = d
		d.UID = "7d1e3a5b-2c4f-4a6e-8b0d-1f3e5a7c9b2d"
		d.ManagedFields = managedFields(containers)
		resp = d
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(envelope, &ev); err != nil {
		b.Fatal(err)
	}
	for name, body := range map[string]any{"requestObject": req, "responseObject": resp} {
		raw, err := json.Marshal(body)
		if err != nil {
			b.Fatal(err)
		}
		ev[name] = raw
	}
	out, err := json.Marshal(ev)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// envPerContainer is a long but ordinary environment.
const envPerContainer = 20

func podSpec(containers, seed int) corev1.PodSpec {
	spec := corev1.PodSpec{ServiceAccountName: "payments-api", NodeSelector: map[string]string{"pool": "general"}}
	for c := range containers {
		ct := corev1.Container{
			Name:    fmt.Sprintf("worker-%d", c),
			Image:   fmt.Sprintf("registry.internal.example.com/payments/worker:%d.%d.%d", seed, c, 7),
			Command: []string{"/bin/worker", "--config=/etc/worker/config.yaml", fmt.Sprintf("--shard=%d", c)},
			Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "metrics", ContainerPort: 9090}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
			},
			VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/worker"}, {Name: "tmp", MountPath: "/tmp"}},
			SecurityContext: &corev1.SecurityContext{
				RunAsNonRoot: new(true), ReadOnlyRootFilesystem: new(true),
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}
		for e := range envPerContainer {
			ct.Env = append(ct.Env, corev1.EnvVar{Name: fmt.Sprintf("WORKER_SETTING_%02d", e), Value: fmt.Sprintf("value-%d-%d-with-some-realistic-length\"quoted\"", c, e)})
		}
		spec.Containers = append(spec.Containers, ct)
	}
	spec.Volumes = []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "worker-config"}}}},
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	return spec
}

// managedFields is the server-side-apply bookkeeping every stored object
// carries: one nested object per container and environment variable.
func managedFields(containers int) []metav1.ManagedFieldsEntry {
	fields := map[string]any{"f:metadata": map[string]any{"f:labels": map[string]any{"f:app": map[string]any{}}}}
	spec := map[string]any{}
	for c := range containers {
		env := map[string]any{}
		for e := range envPerContainer {
			env[fmt.Sprintf(`k:{"name":"WORKER_SETTING_%02d"}`, e)] = map[string]any{".": map[string]any{}, "f:name": map[string]any{}, "f:value": map[string]any{}}
		}
		spec[fmt.Sprintf(`k:{"name":"worker-%d"}`, c)] = map[string]any{"f:env": env, "f:image": map[string]any{}, "f:name": map[string]any{}}
	}
	fields["f:spec"] = map[string]any{"f:containers": spec}
	raw, _ := json.Marshal(fields)
	return []metav1.ManagedFieldsEntry{{
		Manager: "kubectl-client-side-apply", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
		FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(string(raw)),
	}}
}

// BenchmarkDecodeLargeEncodingJSON is the baseline on large bodies.
func BenchmarkDecodeLargeEncodingJSON(b *testing.B) {
	events, bytes := largeEvents(b)
	benchEncodingJSON(b, events, bytes)
}

// BenchmarkDecodeLargeEvent is DecodeEvent on large bodies, which it
// validates and keeps raw.
func BenchmarkDecodeLargeEvent(b *testing.B) {
	events, bytes := largeEvents(b)
	benchDecodeEvent(b, events, bytes)
}

// TestLargeEventSizes keeps the large events in the range they claim.
func TestLargeEventSizes(t *testing.T) {
	events, _ := largeEvents(t)
	lo, hi := len(events[0]), len(events[0])
	for _, ev := range events {
		lo, hi = min(lo, len(ev)), max(hi, len(ev))
	}
	if lo < 15_000 || hi > 250_000 {
		t.Fatalf("large events span %d..%d bytes, want about 20 KB..200 KB", lo, hi)
	}
	t.Logf("large events span %d..%d bytes", lo, hi)
}
