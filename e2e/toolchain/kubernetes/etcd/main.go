// Command etcd is etcd's own server entry point (go.etcd.io/etcd/server/v3/etcdmain), at the version
// the pinned kube-apiserver is built and tested against.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
