// Package alert routes detect's findings to Slack, Alertmanager, a generic
// webhook or stdout, off the commit path.
//
// The design follows Alertmanager's: a routing tree over finding labels
// (detector, severity, cluster, namespace, user, tag) whose children
// inherit their parent's receiver and timing and stop at the first match
// unless continue is set; groups that wait group_wait before their first
// message and group_interval between messages; and a cooldown
// (repeat_interval) keyed by cluster, detector, principal and object, so a
// finding repeated 500 times is one message saying "×500".
//
// Wiring, in cmd/detect:
//
//	cfg, err := alert.LoadConfig(path) // or alert.Simple(alert.SimpleOptions{...})
//	n, err := alert.New(cfg, log, reg)
//	n.Start()
//	proc.SetAlerter(n)
//	err = proc.Run(ctx)
//	err = errors.Join(err, n.Stop(context.Background())) // after Run: flushes
//
// Notify never blocks: it copies the batch into a bounded queue (full:
// dropped and counted as auditpipe_alert_dropped_total{receiver="_intake"}).
// One dispatcher goroutine groups findings; each receiver has its own
// bounded queue and one sender goroutine that retries with exponential
// backoff, honours Retry-After on 429, retries 5xx and network errors, and
// gives up at once on other 4xx. The optional state file remembers what was
// delivered, so a restarted detect does not repeat itself.
package alert
