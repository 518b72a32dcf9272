public enum QCOW2Placeholder {}
