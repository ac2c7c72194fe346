package agentapi

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxFrame bounds one frame's JSON. A start event with every annotation of a large pod is a few
// KiB; a list of thousands of containers fits easily.
const MaxFrame = 4 << 20

// ErrFrameTooLarge is returned for a frame whose announced length exceeds the limit.
var ErrFrameTooLarge = errors.New("agentapi: frame too large")

// WriteFrame writes env as one frame. V is set to Version when zero.
func WriteFrame(w io.Writer, env *Envelope) error {
	if env.V == 0 {
		env.V = Version
	}
	body, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("agentapi: encode %s: %w", env.Type, err)
	}
	if len(body) > MaxFrame {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrFrameTooLarge, len(body), MaxFrame)
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	_, err = w.Write(buf)
	return err
}

// ReadFrame reads one frame of at most limit bytes (MaxFrame when limit <= 0) and decodes it.
// It returns io.EOF when r ends cleanly before a frame starts.
func ReadFrame(r io.Reader, limit int) (*Envelope, error) {
	if limit <= 0 || limit > MaxFrame {
		limit = MaxFrame
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("agentapi: truncated frame header: %w", err)
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(limit) {
		return nil, fmt.Errorf("%w: %d bytes announced (limit %d)", ErrFrameTooLarge, n, limit)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("agentapi: truncated frame body (%d bytes announced): %w", n, err)
	}
	return DecodeEnvelope(body)
}

// DecodeEnvelope decodes and checks one envelope's JSON (a frame body or a spool file).
func DecodeEnvelope(body []byte) (*Envelope, error) {
	env := new(Envelope)
	if err := json.Unmarshal(body, env); err != nil {
		return nil, fmt.Errorf("agentapi: malformed message: %w", err)
	}
	if env.V != Version {
		return nil, fmt.Errorf("agentapi: protocol version %d not supported (this side speaks %d)", env.V, Version)
	}
	if env.Type == "" {
		return nil, errors.New("agentapi: message has no type")
	}
	switch env.Type {
	case TypeEvent:
		if err := env.Event.Check(); err != nil {
			return nil, err
		}
	case TypePolicyChange:
		if env.PolicyChange == nil {
			return nil, errors.New("agentapi: policy change message without a policy change")
		}
	}
	return env, nil
}

// Check reports whether an event carries what the agent needs to apply it.
func (e *Event) Check() error {
	switch {
	case e == nil:
		return errors.New("agentapi: event message without an event")
	case e.Kind != KindStart && e.Kind != KindStop:
		return fmt.Errorf("agentapi: event kind %q is neither %q nor %q", e.Kind, KindStart, KindStop)
	case e.Container.ID == "":
		return errors.New("agentapi: event without a container id")
	case len(e.Container.ID) > 1024:
		return errors.New("agentapi: container id longer than 1024 bytes")
	case e.Container.PID < 0:
		return fmt.Errorf("agentapi: negative pid %d", e.Container.PID)
	}
	return nil
}
