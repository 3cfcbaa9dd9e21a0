package eventhubs

import (
	"errors"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

// clusterMapFile is the --cluster-map-file format:
//
//	clusters:
//	  - resource_id: /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.ContainerService/managedClusters/prod-eu1
//	    cluster: prod-eu1
type clusterMapFile struct {
	Clusters []struct {
		ResourceID string `json:"resource_id"`
		Cluster    string `json:"cluster"`
	} `json:"clusters"`
}

// LoadClusterMap reads a cluster map file strictly (unknown keys are
// errors) into Config.Clusters' form. Config.Validate checks the entries.
func LoadClusterMap(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading cluster map: %w", err)
	}
	var f clusterMapFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("parsing cluster map %s: %w", path, err)
	}
	if len(f.Clusters) == 0 {
		return nil, fmt.Errorf("cluster map %s lists no clusters (clusters: [{resource_id, cluster}])", path)
	}
	m := make(map[string]string, len(f.Clusters))
	var errs []error
	for i, c := range f.Clusters {
		if c.ResourceID == "" || c.Cluster == "" {
			errs = append(errs, fmt.Errorf("cluster map %s: clusters[%d] needs resource_id and cluster", path, i))
			continue
		}
		if _, dup := m[c.ResourceID]; dup {
			errs = append(errs, fmt.Errorf("cluster map %s: clusters[%d]: resource_id listed twice", path, i))
		}
		m[c.ResourceID] = c.Cluster
	}
	return m, errors.Join(errs...)
}
