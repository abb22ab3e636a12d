package kube_test

import goyaml "go.yaml.in/yaml/v3"

func yamlMarshal(v any) ([]byte, error) { return goyaml.Marshal(v) }
