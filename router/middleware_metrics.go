package router

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// outcomeKey holds, in a message's context, where the metrics middleware
// reads how its delivery ended.
type outcomeKey struct{}

// setOutcome records how the delivery of msg ended (done, failed,
// duplicate, busy, invalid, dead_letter, lease_lost; error when unset).
func setOutcome(msg *message.Message, outcome string) {
	if p, ok := msg.Context().Value(outcomeKey{}).(*string); ok {
		*p = outcome
	}
}

// Middleware counts each delivery of typ by outcome and times it
// (ember_requests_total, ember_request_duration_seconds).
func (m *Metrics) Middleware(typ string) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			began := time.Now()
			outcome := "error"
			msg.SetContext(context.WithValue(msg.Context(), outcomeKey{}, &outcome))
			out, err := h(msg)
			m.observe(typ, outcome, time.Since(began))
			return out, err
		}
	}
}
