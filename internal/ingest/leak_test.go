package ingest

import (
	"testing"

	"go.uber.org/goleak"
)

// senderGoroutines are goroutines the kube-apiserver's webhook client leaves
// behind on purpose. client-go, inside it, starts a certificate rotation
// controller per cached client-certificate transport that runs for the life
// of the process (transport.DialerStopCh is never closed); they belong to
// the sender the tests run, not to ingest.
var senderGoroutines = []goleak.Option{
	goleak.IgnoreAnyFunction("k8s.io/client-go/transport.(*dynamicClientCert).run"),
	goleak.IgnoreAnyFunction("k8s.io/client-go/transport.(*dynamicClientCert).runWorker"),
	goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*delayingType[...]).waitingLoop"),
	goleak.IgnoreAnyFunction("k8s.io/apimachinery/pkg/util/wait.PollImmediateUntilWithContext.poller.func1.1"),
	goleak.IgnoreAnyFunction("k8s.io/apimachinery/pkg/util/wait.PollImmediateUntilWithContext.poller.func1"),
	goleak.IgnoreAnyFunction("k8s.io/apimachinery/pkg/util/wait.PollImmediateUntil"),
	goleak.IgnoreAnyFunction("k8s.io/apimachinery/pkg/util/wait.Until"),
}

// TestMain fails the package's tests when any goroutine other than the
// sender's outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, senderGoroutines...) }
