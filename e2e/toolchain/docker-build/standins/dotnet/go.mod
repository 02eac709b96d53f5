// Stand-in for github.com/pulumi/pulumi-dotnet/pulumi-language-dotnet/v3 (refused by the Go module
// proxy): the docker-build provider imports its code generator for one plain struct.
module github.com/pulumi/pulumi-dotnet/pulumi-language-dotnet/v3

go 1.26.7
