package router

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
)

// recoverToDeadLetter turns a panic in delivery (not in a function: those
// become an .error result, see runOnce) into a dead letter, and acks: a
// bug, not bad luck, and redelivering would crash again. The message is
// parked where an operator will see it.
func (d *delivery) recoverToDeadLetter(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) (out []*message.Message, err error) {
		defer func() {
			if r := recover(); r != nil {
				d.log.Error("panic in delivery; dead-lettering", "type", d.fn.Type(), "panic", r)
				setOutcome(msg, "dead_letter")
				out, err = nil, d.deadLetter(msg, fmt.Sprintf("panic: %v", r))
			}
		}()
		return h(msg)
	}
}
