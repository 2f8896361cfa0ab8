// Command validate decodes every object of a rendered kustomization strictly into its Go type:
// an unknown or misplaced field, or a value of the wrong type, is an error naming the
// document, kind, name and field. Usage: kubectl kustomize DIR | validate [-]
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

// newObject returns an empty value of the Go type of apiVersion/kind, or nil if unknown.
func newObject(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "v1/Service":
		return &corev1.Service{}
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	case "keda.sh/v1alpha1/ScaledObject":
		return &ScaledObject{}
	}
	return nil
}

// splitDocuments splits a YAML stream on "---" lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var current bytes.Buffer
	scanner := bufio.NewScanner(bytes.NewReader(data))
	scanner.Buffer(make([]byte, 1024*1024), 64*1024*1024)
	flush := func() {
		if strings.TrimSpace(current.String()) != "" {
			docs = append(docs, append([]byte(nil), current.Bytes()...))
		}
		current.Reset()
	}
	for scanner.Scan() {
		line := scanner.Text()
		if strings.TrimRight(line, " ") == "---" {
			flush()
			continue
		}
		current.WriteString(line)
		current.WriteByte('\n')
	}
	flush()
	return docs
}

// validate returns one line per object that does not decode strictly.
func validate(source string, data []byte) []string {
	var problems []string
	for i, doc := range splitDocuments(data) {
		var h header
		if err := yaml.Unmarshal(doc, &h); err != nil {
			problems = append(problems, fmt.Sprintf("%s: document %d: %v", source, i+1, err))
			continue
		}
		where := fmt.Sprintf("%s: document %d: %s %s", source, i+1, h.Kind, h.Metadata.Name)
		obj := newObject(h.APIVersion, h.Kind)
		if obj == nil {
			problems = append(problems, fmt.Sprintf("%s: unknown apiVersion/kind %s/%s", where, h.APIVersion, h.Kind))
			continue
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		if so, ok := obj.(*ScaledObject); ok {
			for _, p := range so.check() {
				problems = append(problems, fmt.Sprintf("%s: %s", where, p))
			}
		}
	}
	return problems
}

func main() {
	source := "-"
	if len(os.Args) > 1 {
		source = os.Args[1]
	}
	var data []byte
	var err error
	if source == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(source)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	problems := validate(source, data)
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
	fmt.Printf("%s: %d objects valid\n", source, len(splitDocuments(data)))
}
