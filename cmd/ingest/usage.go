package main

import (
	"flag"
	"fmt"
)

// ingestUsage heads `ingest -h`: the default usage lists only the flags, so
// without it the replay and eventhubs subcommands could not be found from the
// command itself.
const ingestUsage = `Usage:
  ingest [flags]                          serve the audit webhook (POST /audit, /firehose, /pubsub)
  ingest replay [flags] FILE|DIR...       backfill audit log files into the topic
  ingest eventhubs [flags]                consume AKS audit logs from Azure Event Hubs

"ingest replay -h" and "ingest eventhubs -h" list their own flags.

Flags:
`

// replayUsage heads `ingest replay -h`.
const replayUsage = `Usage:
  ingest replay [flags] FILE|DIR...

Backfills apiserver audit log files (JSON lines, plain or gzip, rotated sets,
directories; audit.k8s.io/v1 or v1beta1; EKS, GKE and AKS exports) into the
topic through the webhook's own path: validation, truncation, redaction,
keying, deduplication. Prints a summary of what was produced and rejected.

Flags:
`

// eventHubsUsage heads `ingest eventhubs -h`.
const eventHubsUsage = `Usage:
  ingest eventhubs --connection-string-file FILE [flags]

Consumes AKS audit logs (diagnostic settings kube-audit, kube-audit-admin)
from an Azure event hub through Event Hubs' Kafka endpoint and forwards them
to the topic through the webhook's per-batch path; the hub's offsets move
only once the topic acknowledged.

Flags:
`

// setUsage makes fs print ingestUsage before its flags.
func setUsage(fs *flag.FlagSet) { setUsageHeader(fs, ingestUsage) }

// setUsageHeader makes fs print header before its flags.
func setUsageHeader(fs *flag.FlagSet, header string) {
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), header)
		fs.PrintDefaults()
	}
}
