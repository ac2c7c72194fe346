// Package signingtest holds what tests of signed policy artifacts share: a transparency log
// that runs in memory, so that signatures with log entries are made offline. Only tests
// import it.
package signingtest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/sigstore/rekor/pkg/generated/client/entries"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/types"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
)

// VirtualRekor is a Rekor (v1 API) transparency log in memory, run with a VirtualSigstore's
// log key. sigstore-go's signer hands it the entry it proposes, as it would hand it to a real
// Rekor (sign.NewRekor(&sign.RekorOptions{Client: VirtualRekor{vs}})), and it answers as Rekor
// does: the entry canonicalized, a signed entry timestamp (the inclusion promise) and an
// inclusion proof with a signed checkpoint. So a bundle signed through it carries the log entry
// cosign's keyless signing puts in a bundle.
type VirtualRekor struct {
	VS *ca.VirtualSigstore
}

// CreateLogEntry logs the proposed entry and returns it as Rekor would.
func (l VirtualRekor) CreateLogEntry(params *entries.CreateLogEntryParams, _ ...entries.ClientOption) (*entries.CreateLogEntryCreated, error) {
	impl, err := types.CreateVersionedEntry(params.ProposedEntry)
	if err != nil {
		return nil, err
	}
	body, err := types.CanonicalizeEntry(context.Background(), impl)
	if err != nil {
		return nil, err
	}
	logID, err := l.VS.RekorLogID()
	if err != nil {
		return nil, err
	}
	integrated, index := time.Now().Unix(), int64(0)
	encoded := base64.StdEncoding.EncodeToString(body)
	set, err := l.VS.RekorSignPayload(tlog.RekorPayload{Body: encoded, IntegratedTime: integrated, LogIndex: index, LogID: logID})
	if err != nil {
		return nil, err
	}
	proof, err := l.VS.GetInclusionProof(body)
	if err != nil {
		return nil, err
	}
	leaf := sha256.Sum256(append([]byte{0}, body...))
	uuid := hex.EncodeToString(leaf[:])
	return &entries.CreateLogEntryCreated{ETag: uuid, Payload: models.LogEntry{uuid: {
		Body: encoded, IntegratedTime: &integrated, LogID: &logID, LogIndex: &index,
		Verification: &models.LogEntryAnonVerification{SignedEntryTimestamp: strfmt.Base64(set), InclusionProof: proof},
	}}}, nil
}

// GetLogEntryByUUID is not served: the log keeps no entries.
func (VirtualRekor) GetLogEntryByUUID(*entries.GetLogEntryByUUIDParams, ...entries.ClientOption) (*entries.GetLogEntryByUUIDOK, error) {
	return nil, errors.New("the virtual log keeps no entries")
}
