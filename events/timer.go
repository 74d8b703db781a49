package events

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
)

// Notice describes an event that a timer publishes (backend.stats,
// volume.exists, snapshot.exists): no request caused it, so Build does not
// apply. Its record has the shape of a result's (binary mode headers by
// default, the partition key as the record key).
type Notice struct {
	Type string
	// Source is /ember/<backend>.
	Source string
	// Subject is the resource: a volume, snapshot or backend name.
	Subject string
	// Key is the record key and partitionkey: the volume id (for snapshots,
	// their volume's), or the backend name for backend.stats.
	Key string
	// Discriminator makes the id with (type, subject): the audit period's
	// beginning, or the stats time bucket. Every replica that publishes the
	// same notice publishes the same event.
	Discriminator string
	Time          time.Time
	Data          ResultData
}

var noticeNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/ember-storage/ember/notice"))

// NoticeID derives a timer event's id from its type, subject and discriminator.
func NoticeID(typ, subject, discriminator string) string {
	return uuid.NewSHA1(noticeNS, []byte(typ+"\n"+subject+"\n"+discriminator)).String()
}

// BuildNotice makes the record of a timer event. Its traceparent starts a
// trace derived from the id, so a re-published notice is byte-identical.
func BuildNotice(n Notice, mode Mode) (Record, error) {
	e := ce.New(ce.CloudEventsVersionV1)
	id := NoticeID(n.Type, n.Subject, n.Discriminator)
	e.SetID(id)
	e.SetType(n.Type)
	e.SetSource(n.Source)
	e.SetSubject(n.Subject)
	if !n.Time.IsZero() {
		e.SetTime(n.Time.UTC())
	}
	e.SetExtension(ExtPartitionKey, n.Key)
	e.SetExtension(ExtCorrelationID, id)
	h := sha256.Sum256([]byte(id))
	e.SetExtension(ExtTraceParent, "00-"+hex.EncodeToString(h[:16])+"-"+hex.EncodeToString(h[16:24])+"-00")
	if err := e.SetData(contentJSON, n.Data); err != nil {
		return Record{}, fmt.Errorf("%s: %w", n.Type, err)
	}
	if err := e.Validate(); err != nil {
		return Record{}, fmt.Errorf("%s: %w", n.Type, err)
	}
	return encode(e, n.Key, mode)
}
