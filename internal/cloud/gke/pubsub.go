package gke

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Push is one Pub/Sub push request as Google documents it
// (cloud.google.com/pubsub/docs/push): a wrapped message, its data base64
// in message.data. Pub/Sub sends the ids in both camelCase and snake_case.
type Push struct {
	Message struct {
		Data         string            `json:"data"`
		Attributes   map[string]string `json:"attributes"`
		MessageID    string            `json:"messageId"`
		MessageIDAlt string            `json:"message_id"`
		PublishTime  string            `json:"publishTime"`
		OrderingKey  string            `json:"orderingKey"`
	} `json:"message"`
	Subscription string `json:"subscription"`
	// DeliveryAttempt is set only when the subscription has a dead-letter
	// topic: 1 on the first delivery.
	DeliveryAttempt int `json:"deliveryAttempt"`
}

// ID returns the message id, whichever spelling carried it.
func (p *Push) ID() string {
	if p.Message.MessageID != "" {
		return p.Message.MessageID
	}
	return p.Message.MessageIDAlt
}

// ErrEmptyMessage reports a push whose message carries no data: Pub/Sub
// allows attribute-only messages, but a Logging sink never publishes one.
var ErrEmptyMessage = errors.New("pub/sub message has no data")

// DecodePush reads a push request body and returns the message data: one
// LogEntry's JSON for a Logging sink. A body that is itself a LogEntry (a
// subscription created with --push-no-wrapper, which posts the data
// unwrapped) is returned as it is, with a zero Push.
func DecodePush(body []byte) (Push, []byte, error) {
	var p Push
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return p, nil, errors.New("decoding pub/sub push: body is not a JSON object")
	}
	if err := json.Unmarshal(trimmed, &p); err != nil {
		return p, nil, fmt.Errorf("decoding pub/sub push: %w", err)
	}
	if p.Message.Data == "" && p.ID() == "" && p.Subscription == "" {
		// No envelope: an unwrapped payload.
		if IsLogEntry(trimmed) {
			return Push{}, trimmed, nil
		}
		return p, nil, errors.New("decoding pub/sub push: no message (want {\"message\":{\"data\":…},\"subscription\":…})")
	}
	if p.Message.Data == "" {
		return p, nil, ErrEmptyMessage
	}
	data, err := base64.StdEncoding.DecodeString(p.Message.Data)
	if err != nil {
		// Some clients write unpadded or URL-safe base64; Pub/Sub does
		// not, but accepting them costs nothing.
		var err2 error
		if data, err2 = base64.RawURLEncoding.DecodeString(p.Message.Data); err2 != nil {
			if data, err2 = base64.RawStdEncoding.DecodeString(p.Message.Data); err2 != nil {
				return p, nil, fmt.Errorf("decoding pub/sub message %s data: %w", quote(p.ID()), err)
			}
		}
	}
	return p, data, nil
}
