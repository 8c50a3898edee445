package main

import (
	_ "embed"
	"net/http"
)

// vimWsdl is a minimal vim25 WSDL written by hand for Vigil's tests (vim-min.wsdl): it describes
// only the operations and types Debian's fence_vmware_soap calls (RetrieveServiceContent, Login,
// Logout, CreateContainerView, RetrievePropertiesEx, ContinueRetrievePropertiesEx,
// FindByInventoryPath, FindByUuid, PowerOnVM_Task, PowerOffVM_Task). fence_vmware_soap's SOAP client
// (python suds) reads the WSDL from <url>/vimService.wsdl before its first call, and vcsim serves
// none; VMware's own WSDL is not used.
//
//go:embed vim-min.wsdl
var vimWsdl []byte

func init() {
	extraHandlers["/sdk/vimService.wsdl"] = serveWsdl
}

func serveWsdl(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	_, _ = w.Write(vimWsdl)
}
