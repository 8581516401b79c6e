/** A modular consumer: it requires the API only; vmcore-impl is bound through ServiceLoader. */
module org.example.simulator {
    requires org.vmcore.api;
}
