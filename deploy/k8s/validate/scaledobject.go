package main

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ScaledObject is the part of KEDA's keda.sh/v1alpha1 ScaledObject that stream-orch uses,
// written from KEDA's documented schema (the kedacore/keda module would pull in most of KEDA's
// dependency tree). A field outside it is reported as unknown, so adding one here is a
// deliberate act checked against https://keda.sh/docs/latest/reference/scaledobject-spec/.
type ScaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ScaledObjectSpec `json:"spec"`
}

type ScaledObjectSpec struct {
	ScaleTargetRef   ScaleTarget    `json:"scaleTargetRef"`
	PollingInterval  *int32         `json:"pollingInterval,omitempty"`
	CooldownPeriod   *int32         `json:"cooldownPeriod,omitempty"`
	IdleReplicaCount *int32         `json:"idleReplicaCount,omitempty"`
	MinReplicaCount  *int32         `json:"minReplicaCount,omitempty"`
	MaxReplicaCount  *int32         `json:"maxReplicaCount,omitempty"`
	Triggers         []ScaleTrigger `json:"triggers"`
}

type ScaleTarget struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Name       string `json:"name"`
}

type ScaleTrigger struct {
	Type       string            `json:"type"`
	Name       string            `json:"name,omitempty"`
	MetricType string            `json:"metricType,omitempty"`
	Metadata   map[string]string `json:"metadata"`
}

// check reports what the types cannot: required values and the prometheus trigger's fields.
func (s *ScaledObject) check() []string {
	var problems []string
	if s.Spec.ScaleTargetRef.Name == "" {
		problems = append(problems, "spec.scaleTargetRef.name: required")
	}
	if len(s.Spec.Triggers) == 0 {
		problems = append(problems, "spec.triggers: at least one")
	}
	if s.Spec.MinReplicaCount != nil && s.Spec.MaxReplicaCount != nil && *s.Spec.MinReplicaCount > *s.Spec.MaxReplicaCount {
		problems = append(problems, "spec.maxReplicaCount: below minReplicaCount")
	}
	for i, t := range s.Spec.Triggers {
		if t.Type != "prometheus" {
			continue
		}
		for _, key := range []string{"serverAddress", "query", "threshold"} {
			if t.Metadata[key] == "" {
				problems = append(problems, fmt.Sprintf("spec.triggers[%d].metadata.%s: required", i, key))
			}
		}
	}
	return problems
}
