// Package codegen holds the one type the docker-build provider takes from pulumi-dotnet: the C# SDK
// settings it writes into its schema (same JSON names as upstream, so the schema is unchanged).
package codegen

type CSharpPackageInfo struct {
	RespectSchemaVersion bool              `json:"respectSchemaVersion,omitempty"`
	PackageReferences    map[string]string `json:"packageReferences,omitempty"`
}
