export { type Bmc, netnsPowerControl, startBmc } from './bmc.js'
export { Daemon, freePort, udpPortTaken, waitFor } from './daemon.js'
export {
  type EtcdCluster,
  type EtcdMember,
  type EtcdMemberPlan,
  etcdAnswers,
  etcdClusterPlan,
  startEtcdCluster,
} from './etcd.js'
export { type HangableMount, startHangableMount } from './hung-mount.js'
export {
  guestDomainXml,
  guestImage,
  type Libvirt,
  preparePeerLibvirt,
  startLibvirt,
  startPeerLibvirt,
} from './libvirt.js'
export { NETDELAY_PATH, type NetworkDelay, startNetworkDelay } from './netdelay.js'
export { type LabHost, NetnsHost, NetnsLab, setPacketLoss } from './netns.js'
export { type Pdu, startPdu } from './pdu.js'
export { type Prometheus, startPrometheus } from './prometheus.js'
export { type Sshd, startSshd } from './sshd.js'
export { startVcsim, VCSIM_PATH, type Vcsim, vcsimHostPowerControl, vsphereResourceLines } from './vcsim.js'
