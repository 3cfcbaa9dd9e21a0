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

// setUsage makes fs print ingestUsage before its flags.
func setUsage(fs *flag.FlagSet) {
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), ingestUsage)
		fs.PrintDefaults()
	}
}
