public enum QCOW2APIPlaceholder {}
