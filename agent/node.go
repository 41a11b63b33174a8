package agent

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// EventNamespace is where the agent creates its Events about the Node (a
// cluster-scoped object's events live in "default", as the kubelet's do).
const EventNamespace = "default"

// NodeStatus publishes a check result as the Node's ICRCredentialsReady
// condition (a strategic merge patch of nodes/status: the agent's only
// write to the Node) and, when it changed, an Event on the Node.
type NodeStatus struct {
	Client   kubernetes.Interface
	NodeName string
	// transition is when the condition's status last changed.
	transition metav1.Time
	status     corev1.ConditionStatus
}

func (p *NodeStatus) Publish(ctx context.Context, h Health, changed bool) error {
	now := metav1.NewTime(h.At)
	status, typ := corev1.ConditionFalse, corev1.EventTypeWarning
	if h.OK {
		status, typ = corev1.ConditionTrue, corev1.EventTypeNormal
	}
	if status != p.status || p.transition.IsZero() {
		p.status, p.transition = status, now
	}
	cond := corev1.NodeCondition{
		Type:               ConditionType,
		Status:             status,
		Reason:             h.Reason,
		Message:            h.Message,
		LastHeartbeatTime:  now,
		LastTransitionTime: p.transition,
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{cond}}})
	if err != nil {
		return err
	}
	if _, err := p.Client.CoreV1().Nodes().PatchStatus(ctx, p.NodeName, patch); err != nil {
		return fmt.Errorf("patch the status of node %s: %w", p.NodeName, err)
	}
	if !changed {
		return nil
	}
	ev := &corev1.Event{
		// Named as the kubelet names its events: object name and time.
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", p.NodeName, h.At.UnixNano()), Namespace: EventNamespace},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: p.NodeName, UID: types.UID(p.NodeName), APIVersion: "v1"},
		Reason:         h.Reason,
		Message:        h.Message,
		Type:           typ,
		Source:         corev1.EventSource{Component: "icr-node-agent", Host: p.NodeName},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}
	if _, err := p.Client.CoreV1().Events(EventNamespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create an event for node %s: %w", p.NodeName, err)
	}
	return nil
}
