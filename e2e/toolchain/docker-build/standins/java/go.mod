// Stand-in for github.com/pulumi/pulumi-java (the Go module proxy refuses it): the docker-build
// provider imports its Java code generator for one plain struct, the SDK settings in its schema.
module github.com/pulumi/pulumi-java

go 1.26.7
