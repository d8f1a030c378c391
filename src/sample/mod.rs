pub mod rbm;
