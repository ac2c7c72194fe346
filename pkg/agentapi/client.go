package agentapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Client talks to karmord over its unix socket. The zero value is not usable; use NewClient.
type Client struct {
	Socket string
	// Timeout bounds each whole exchange when the context has no earlier deadline.
	Timeout time.Duration
}

// NewClient returns a client for the agent listening on socket (DefaultSocket when empty).
func NewClient(socket string) *Client {
	if socket == "" {
		socket = DefaultSocket
	}
	return &Client{Socket: socket, Timeout: 5 * time.Second}
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	if _, ok := ctx.Deadline(); !ok && c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return nil, fmt.Errorf("karmord not reachable at %s: %w", c.Socket, err)
	}
	return conn, nil
}

// roundTrip sends req and reads one answer, all within the context's deadline (or c.Timeout).
func (c *Client) roundTrip(ctx context.Context, req *Envelope) (*Envelope, error) {
	var resp *Envelope
	err := c.exchange(ctx, req, func(env *Envelope) (bool, error) {
		resp = env
		return false, nil
	})
	return resp, err
}

// exchange sends req and passes each answer frame to next until next says no more follow, all
// within the context's deadline (or c.Timeout). An error answer ends it with an *AgentError.
func (c *Client) exchange(ctx context.Context, req *Envelope, next func(*Envelope) (more bool, err error)) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok && c.Timeout > 0 {
		deadline = time.Now().Add(c.Timeout)
	}
	if !deadline.IsZero() {
		_ = conn.SetDeadline(deadline)
	}
	if err := WriteFrame(conn, req); err != nil {
		return fmt.Errorf("send %s to karmord: %w", req.Type, err)
	}
	for {
		resp, err := ReadFrame(conn, 0)
		if err != nil {
			return fmt.Errorf("read karmord's answer to %s: %w", req.Type, err)
		}
		if resp.Type == TypeError {
			return &AgentError{Msg: resp.Error}
		}
		more, err := next(resp)
		if err != nil || !more {
			return err
		}
	}
}

// AgentError is an error the agent answered with.
type AgentError struct{ Msg string }

func (e *AgentError) Error() string { return "karmord: " + e.Msg }

// Report sends one event and waits for its acknowledgement; it returns the event's sequence number.
func (c *Client) Report(ctx context.Context, ev *Event) (uint64, error) {
	resp, err := c.roundTrip(ctx, &Envelope{Type: TypeEvent, Event: ev})
	if err != nil {
		return 0, err
	}
	if resp.Type != TypeAck {
		return 0, fmt.Errorf("karmord answered %q to an event, want %q", resp.Type, TypeAck)
	}
	return resp.Seq, nil
}

// List returns every live container the agent knows.
func (c *Client) List(ctx context.Context) ([]Container, error) {
	l, err := c.ListSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	return l.Containers, nil
}

// ContainerList is the agent's answer to a list: the live containers, the sequence number of
// the latest event they reflect, and the policy set their Policies come from.
type ContainerList struct {
	Containers []Container
	// Seq is the latest event the list reflects: Watch from it continues exactly where the
	// list ends, without a gap or a repeat.
	Seq uint64
	// PolicyGeneration is the generation of the policy set the containers were matched with.
	PolicyGeneration uint64
}

// ListSnapshot returns every live container with the sequence number the list reflects. It
// asks for the answer in several frames (Envelope.Chunked), so that any number of containers
// fits, and reassembles it; an agent that predates chunking answers in one frame.
func (c *Client) ListSnapshot(ctx context.Context) (*ContainerList, error) {
	var list *ContainerList
	err := c.exchange(ctx, &Envelope{Type: TypeList, Chunked: true}, func(resp *Envelope) (bool, error) {
		if resp.Type != TypeContainers {
			return false, fmt.Errorf("karmord answered %q to list, want %q", resp.Type, TypeContainers)
		}
		if list == nil {
			list = &ContainerList{Seq: resp.Seq, PolicyGeneration: resp.PolicyGeneration}
		} else if resp.Seq != list.Seq || resp.PolicyGeneration != list.PolicyGeneration {
			return false, fmt.Errorf("karmord's list answer changed snapshot midway (seq %d then %d)", list.Seq, resp.Seq)
		}
		list.Containers = append(list.Containers, resp.Containers...)
		return resp.More, nil
	})
	if err != nil {
		return nil, err
	}
	return list, nil
}

// Policies returns the policy set in force, its sources and their state.
func (c *Client) Policies(ctx context.Context) (*PolicyState, error) {
	resp, err := c.roundTrip(ctx, &Envelope{Type: TypePolicyList})
	if err != nil {
		return nil, err
	}
	if resp.Type != TypePolicyState || resp.PolicyState == nil {
		return nil, fmt.Errorf("karmord answered %q to %s, want %q", resp.Type, TypePolicyList, TypePolicyState)
	}
	return resp.PolicyState, nil
}

// Explain returns every policy's verdict on one container, named by id, unique id prefix or
// name. A container the agent does not know is an *AgentError saying so.
func (c *Client) Explain(ctx context.Context, id string) (*Explanation, error) {
	return c.explain(ctx, &Envelope{Type: TypeExplain, ID: id})
}

// ExplainNode returns every policy's verdict on the node karmord runs on.
func (c *Client) ExplainNode(ctx context.Context) (*Explanation, error) {
	return c.explain(ctx, &Envelope{Type: TypeExplain, Node: true})
}

func (c *Client) explain(ctx context.Context, req *Envelope) (*Explanation, error) {
	resp, err := c.roundTrip(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.Type != TypeExplanation || resp.Explanation == nil {
		return nil, fmt.Errorf("karmord answered %q to %s, want %q", resp.Type, TypeExplain, TypeExplanation)
	}
	return resp.Explanation, nil
}

// ErrNotFound is returned by Get when the agent knows no such container.
var ErrNotFound = errors.New("no such container")

// Get returns one container by id, unique id prefix or name.
func (c *Client) Get(ctx context.Context, id string) (*Container, error) {
	resp, err := c.roundTrip(ctx, &Envelope{Type: TypeGet, ID: id})
	if err != nil {
		return nil, err
	}
	if resp.Type != TypeContainers {
		return nil, fmt.Errorf("karmord answered %q to get, want %q", resp.Type, TypeContainers)
	}
	if len(resp.Containers) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return &resp.Containers[0], nil
}

// Watch streams events with a sequence number above fromSeq to fn until ctx ends, fn returns an
// error, or the agent closes the stream. Each envelope passed to fn has its Seq and is either
// TypeEvent (Event set: a container started or stopped) or TypePolicyChange (PolicyChange set);
// skip types you do not know, later agents may stream more. Connecting is bounded by c.Timeout
// (when ctx has no deadline); the stream itself runs until ctx ends.
func (c *Client) Watch(ctx context.Context, fromSeq uint64, fn func(*Envelope) error) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if err := WriteFrame(conn, &Envelope{Type: TypeWatch, FromSeq: fromSeq}); err != nil {
		return fmt.Errorf("send watch to karmord: %w", err)
	}
	for {
		env, err := ReadFrame(conn, 0)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("watch stream from karmord: %w", err)
		}
		if env.Type == TypeError {
			return &AgentError{Msg: env.Error}
		}
		if err := fn(env); err != nil {
			return err
		}
	}
}

// Health returns whether karmord is healthy and ready, and each of its checks.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	resp, err := c.roundTrip(ctx, &Envelope{Type: TypeHealth})
	if err != nil {
		return nil, err
	}
	if resp.Type != TypeHealthState || resp.Health == nil {
		return nil, fmt.Errorf("karmord answered %q to %s, want %q", resp.Type, TypeHealth, TypeHealthState)
	}
	return resp.Health, nil
}
