package alert

import "github.com/auditpipe/auditpipe/internal/config"

// Secret holds a credential such as a Slack webhook URL; every way of
// printing it shows "<secret>". It is config.Secret, which the commands'
// configurations use too.
type Secret = config.Secret
