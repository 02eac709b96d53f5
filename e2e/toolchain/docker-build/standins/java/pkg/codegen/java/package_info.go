// Package java holds the one type the docker-build provider takes from pulumi-java: the Java SDK
// settings it writes into its schema (same JSON names as upstream, so the schema is unchanged).
package java

type PackageInfo struct {
	BuildFiles                      string            `json:"buildFiles,omitempty"`
	GradleNexusPublishPluginVersion string            `json:"gradleNexusPublishPluginVersion,omitempty"`
	Dependencies                    map[string]string `json:"dependencies,omitempty"`
}
